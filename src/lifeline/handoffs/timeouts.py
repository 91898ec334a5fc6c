"""What the clock does to an escalation: its policy's steps, its expiry, a stale pick-up.

Each function is one unit of a sweeper's work, run in the caller's transaction, and each first
re-checks the handoff with a write (or a row lock) on the handoff's row: a claim, release,
resolve or cancel committing at the same moment either committed first (and this writes
nothing) or waits for this transaction and then skips what it wrote.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import SessionStatus
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, HandoffStatus
from lifeline.notifications import outbox
from lifeline.notifications.models import Channel, DeliveryKind
from lifeline.policies.timeline import StepRef
from lifeline.realtime.events import AUDIENCE_ACCOUNT, record_event


async def fire_step(
    *,
    db: AsyncSession,
    handoff: Handoff,
    round_: int,
    ref: StepRef,
    recipients: Sequence[outbox.Recipient],
    email_cap: int,
    allowance: outbox.EmailAllowance | None = None,
) -> bool:
    """Record ``ref`` as fired and write its wave to ``recipients``, if the escalation is still
    open in the same round (not claimed, released or closed meanwhile); False, writing nothing,
    otherwise. ``handoff`` may be a snapshot read before this transaction: the conditional
    write is what decides, and nothing the wave uses changes while a round stays open."""
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        update(Handoff)
        .where(
            Handoff.id == handoff.id,
            Handoff.status == HandoffStatus.OPEN,
            Handoff.policy_round == round_,
        )
        .values(policy_step=ref.number)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    step = handoffs.policy_of(handoff).steps[ref.step]
    await record_event(
        db=db,
        account_id=handoff.account_id,
        type="handoff.reminder",
        audience=AUDIENCE_ACCOUNT,
        data={**handoffs.handoff_data(handoff), "step": ref.number, "repeat": ref.loop},
    )
    if recipients:
        await outbox.write_wave(
            db=db,
            handoff_id=handoff.id,
            account_id=handoff.account_id,
            kind=DeliveryKind.STEP,
            event_key=outbox.step_event_key(
                handoff.id, round_=round_, loop=ref.loop, step_number=ref.number
            ),
            recipients=recipients,
            channels=step.channels,
            email_cap=email_cap,
            allowance=allowance,
        )
    return True


async def _tell(
    db: AsyncSession, handoff: Handoff, user_id: str, kind: DeliveryKind, *, email_cap: int
) -> None:
    """Push and email to one person about this handoff (not a policy wave to the team)."""
    user = await db.get(User, user_id)
    if user is None or user.deleted_at is not None:
        return
    await outbox.write_wave(
        db=db,
        handoff_id=handoff.id,
        account_id=handoff.account_id,
        kind=kind,
        event_key=f"{handoff.id}:{kind}:{handoff.policy_round}",
        recipients=[user],
        channels=(Channel.PUSH, Channel.EMAIL),
        email_cap=email_cap,
    )


async def expire(
    *, db: AsyncSession, handoff_id: str, round_: int, now: datetime, email_cap: int
) -> bool:
    """Nobody picked it up in time: ``expired``, the escalator told by push and email."""
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        update(Handoff)
        .where(
            Handoff.id == handoff_id,
            Handoff.status == HandoffStatus.OPEN,
            Handoff.policy_round == round_,
        )
        .values(status=HandoffStatus.EXPIRED, expired_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    handoff = await db.get(Handoff, handoff_id, populate_existing=True)
    assert handoff is not None
    await handoffs.leave_queue(db, handoff, "expired before it was sent")
    await sessions.set_status(db, handoff.session_id, SessionStatus.ACTIVE, now)
    await handoffs.publish(db, handoff, "handoff.expired")
    await _tell(db, handoff, handoff.created_by, DeliveryKind.EXPIRED, email_cap=email_cap)
    return True


async def _lock_claim(db: AsyncSession, handoff_id: str, round_: int) -> Handoff | None:
    """The claimed handoff, its row held until commit (PostgreSQL; SQLite's whole write lock
    is held already), or None if it is no longer claimed in this round."""
    query = select(Handoff).where(
        Handoff.id == handoff_id,
        Handoff.status == HandoffStatus.CLAIMED,
        Handoff.policy_round == round_,
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    handoff: Handoff | None = await db.scalar(query.execution_options(populate_existing=True))
    return handoff


async def last_activity(db: AsyncSession, handoff: Handoff) -> datetime:
    """The claim, or the latest message in the session since."""
    assert handoff.claimed_at is not None
    tail = await sessions.last_messages(db=db, session_id=handoff.session_id, count=1)
    latest = tail[-1].created_at if tail else handoff.claimed_at
    return max(latest, handoff.claimed_at)


async def check_claim(
    *,
    db: AsyncSession,
    handoff_id: str,
    round_: int,
    reminded: bool,
    now: datetime,
    email_cap: int,
) -> str:
    """A claimed escalation whose time came: auto-release it if idle that long, else remind
    the claimer once ("still on it?"), else look again later. Returns what it did."""
    handoff = await _lock_claim(db, handoff_id, round_)
    if handoff is None or handoff.claimed_by is None or handoff.claimed_at is None:
        return "gone"
    policy = handoffs.policy_of(handoff)
    activity = await last_activity(db, handoff)
    minutes = policy.auto_release_minutes
    if minutes is not None and (now - activity).total_seconds() >= minutes * 60:
        released = await handoffs.requeue(
            db, handoff, handoff.claimed_by, tell_claimer=True, email_cap=email_cap
        )
        return "released" if released else "gone"
    reminder = policy.claim_reminder_minutes
    if (
        not reminded
        and reminder is not None
        and (now - handoff.claimed_at).total_seconds() >= (reminder * 60)
    ):
        await _tell(
            db, handoff, handoff.claimed_by, DeliveryKind.CLAIM_REMINDER, email_cap=email_cap
        )
        reminded = True
        done = "reminded"
    else:
        done = "waiting"
    await handoffs.watch_claim(db, handoff, activity_at=activity, reminded=reminded)
    return done


__all__ = ["check_claim", "expire", "fire_step", "last_activity"]
