"""The hand-off state machine: park, escalate, claim (Pick Up), release, resolve, cancel.

Every transition is one conditional ``UPDATE … WHERE status = …`` so concurrent callers can't
both win, on SQLite and PostgreSQL alike; the rowcount says who did.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, Row, Select, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import aliased

from lifeline.accounts.models import SENIOR_ROLES, Role, User, is_manager, is_senior
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import AISession, SessionStatus
from lifeline.db import utcnow
from lifeline.errors import Conflict, Forbidden, NotFound, Unauthorized
from lifeline.handoffs.claim_gate import ClaimFacts, ClaimGate, Seen, Turn
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent
from lifeline.handoffs.schemas import HandoffRead
from lifeline.notifications import outbox
from lifeline.notifications.models import DeliveryKind
from lifeline.pagination import keyset, page
from lifeline.policies import schedule
from lifeline.policies import service as policies
from lifeline.policies.schemas import EscalationPolicy, default_policy
from lifeline.policies.timeline import StepRef, following
from lifeline.realtime.events import AUDIENCE_ACCOUNT, audience_user, record_event

log = logging.getLogger(__name__)


def handoff_data(handoff: Handoff) -> dict[str, Any]:
    data: dict[str, Any] = HandoffRead.model_validate(handoff).model_dump(mode="json")
    return data


async def publish(db: AsyncSession, handoff: Handoff, type_: str) -> None:
    audience = (
        AUDIENCE_ACCOUNT if handoff.intent == Intent.ESCALATE else audience_user(handoff.created_by)
    )
    await record_event(
        db=db,
        account_id=handoff.account_id,
        type=type_,
        audience=audience,
        data=handoff_data(handoff),
    )


async def create_handoff(
    *,
    db: AsyncSession,
    actor: User,
    session_id: str,
    intent: Intent,
    note: str,
    email_cap: int,
    brief: dict[str, Any] | None = None,
) -> Handoff:
    """Park (private, no fan-out) or escalate (the team is told once this commits; at most
    ``email_cap`` emails an hour per account, ``Settings.email_cap_per_hour``)."""
    session = await sessions.get_visible_session(db=db, user=actor, session_id=session_id)
    if not sessions.is_session_owner(session, actor):
        raise Forbidden("Only the session's creator or assignee can hand it off")
    if intent == Intent.PARK:
        await _refuse_park_over_live_work(db, session.id, actor)
    now = utcnow()
    snapshot = None
    if intent == Intent.ESCALATE:
        policy = await policies.get_policy(db=db, account_id=session.account_id)
        snapshot = policy.model_dump(mode="json")
    handoff = Handoff(
        policy=snapshot,
        session_id=session.id,
        account_id=session.account_id,
        intent=intent,
        status=HandoffStatus.OPEN,
        note=note or (brief or {}).get("ask", ""),
        brief=brief,
        created_by=actor.id,
        created_at=now,
        queued_at=now,
    )
    if intent == Intent.ESCALATE:
        # An escalation supersedes the escalator's own parks of the session.
        await db.execute(
            update(Handoff)
            .where(
                Handoff.session_id == session.id,
                Handoff.intent == Intent.PARK,
                Handoff.status == HandoffStatus.OPEN,
            )
            .values(status=HandoffStatus.RESOLVED, resolved_by=actor.id, resolved_at=now)
        )
    try:
        async with db.begin_nested():
            db.add(handoff)
    except IntegrityError as exc:
        raise Conflict("An escalation is already open or claimed for this session") from exc

    if intent == Intent.ESCALATE:
        await sessions.mark_escalated(db, session.id, now)
        await publish(db, handoff, "handoff.escalated")
        await _start_policy(db, handoff, DeliveryKind.ESCALATED, email_cap=email_cap)
    else:
        await sessions.mark_parked(db, session.id, actor.id, now)
        await publish(db, handoff, "handoff.parked")
    return handoff


def policy_of(handoff: Handoff) -> EscalationPolicy:
    """The policy this escalation was raised under (its snapshot)."""
    if handoff.policy is None:
        return default_policy()
    return EscalationPolicy.model_validate(handoff.policy)


async def _start_policy(
    db: AsyncSession,
    handoff: Handoff,
    kind: DeliveryKind,
    *,
    email_cap: int,
    exclude_user_id: str | None = None,
) -> None:
    """From step 1, counted from ``queued_at``: a step due at once goes out with this
    transaction (the escalation's own wave, or the release's), the rest is scheduled."""
    policy = policy_of(handoff)
    first = StepRef(0, 0)
    next_ref: StepRef | None = first
    if policy.steps[0].after_minutes == 0:
        # The escalation's wave is one event; each release's a new one, numbered by round.
        key = None
        if kind != DeliveryKind.ESCALATED:
            key = f"{handoff.id}:{kind}:{handoff.policy_round}"
        await outbox.enqueue_wave(
            db=db,
            handoff=handoff,
            kind=kind,
            exclude_user_id=exclude_user_id,
            step=policy.steps[0],
            event_key=key,
            email_cap=email_cap,
        )
        handoff.policy_step = 1
        next_ref = following(policy, first)
    await schedule.follow_policy(
        db=db,
        handoff_id=handoff.id,
        account_id=handoff.account_id,
        policy=policy,
        origin=handoff.queued_at,
        next_ref=next_ref,
        round_=handoff.policy_round,
    )
    await db.flush()


async def leave_queue(db: AsyncSession, handoff: Handoff, reason: str) -> None:
    """No more policy waves: the schedule goes, pending ones are skipped, in this transaction."""
    await schedule.stop(db=db, handoff_id=handoff.id)
    await outbox.skip_pending_policy_deliveries(db=db, handoff_id=handoff.id, reason=reason)


async def _refuse_park_over_live_work(db: AsyncSession, session_id: str, actor: User) -> None:
    """A session the team is working on can't be set aside, and a park is made once."""
    live = await db.scalar(
        select(Handoff.intent)
        .where(
            Handoff.session_id == session_id,
            (
                (Handoff.intent == Intent.ESCALATE)
                & Handoff.status.in_([HandoffStatus.OPEN, HandoffStatus.CLAIMED])
            )
            | (
                (Handoff.intent == Intent.PARK)
                & (Handoff.status == HandoffStatus.OPEN)
                & (Handoff.created_by == actor.id)
            ),
        )
        .limit(1)
    )
    if live == Intent.ESCALATE:
        raise Conflict("An escalation is already open or claimed for this session")
    if live == Intent.PARK:
        raise Conflict("You have already parked this session")


def _visible_handoffs(user: User) -> Any:
    """Escalations are the account's; a park is its creator's alone."""
    return (Handoff.account_id == user.account_id) & (
        (Handoff.intent == Intent.ESCALATE) | (Handoff.created_by == user.id)
    )


async def get_handoff(*, db: AsyncSession, user: User, session_id: str, handoff_id: str) -> Handoff:
    handoff = await db.scalar(
        select(Handoff).where(
            Handoff.id == handoff_id, Handoff.session_id == session_id, _visible_handoffs(user)
        )
    )
    if handoff is None:
        raise NotFound("Handoff not found")
    return handoff


async def find_handoff(*, db: AsyncSession, user: User, handoff_id: str) -> Handoff:
    """A handoff by id alone (agents know only that); another account's is "not found"."""
    handoff = await db.scalar(
        select(Handoff)
        .where(Handoff.id == handoff_id, _visible_handoffs(user))
        .execution_options(populate_existing=True)
    )
    if handoff is None:
        raise NotFound("Handoff not found")
    return handoff


async def latest_escalation(*, db: AsyncSession, session_id: str) -> Handoff | None:
    """The session's newest escalation, whatever its status."""
    handoff: Handoff | None = await db.scalar(
        select(Handoff)
        .where(Handoff.session_id == session_id, Handoff.intent == Intent.ESCALATE)
        .order_by(Handoff.created_at.desc(), Handoff.id.desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return handoff


async def list_handoffs(
    *, db: AsyncSession, user: User, session_id: str, cursor: str | None, limit: int
) -> tuple[list[Handoff], str | None]:
    """A session's history, newest first; others' parks never appear."""
    await sessions.get_visible_session(db=db, user=user, session_id=session_id)
    query = keyset(
        select(Handoff).where(Handoff.session_id == session_id, _visible_handoffs(user)),
        Handoff.created_at,
        Handoff.id,
        cursor=cursor,
        limit=limit,
        descending=True,
    )
    rows = (await db.scalars(query)).all()
    return page(rows, limit, lambda h: (h.created_at, h.id))


async def _conditional_update(
    db: AsyncSession, handoff: Handoff, where: list[Any], values: dict[str, Any]
) -> bool:
    """One atomic UPDATE guarded by ``where``; True when this caller made the change."""
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        update(Handoff)
        .where(Handoff.id == handoff.id, *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        await db.refresh(handoff)
        return False
    await db.refresh(handoff)
    return True


# Pick Up's statements, built once (building them costs about what running them does);
# the request's values are bound parameters.
_CLAIMER_MAY_HOLD_WORK = (
    select(User.id)
    .where(
        User.id == bindparam("claimer"),
        User.deleted_at.is_(None),
        User.role.in_([str(r) for r in SENIOR_ROLES]),
    )
    .with_for_update(read=True)
    .exists()
)
_CLAIM = (
    update(Handoff)
    .where(
        Handoff.id == bindparam("handoff"),
        Handoff.session_id == bindparam("session"),
        Handoff.account_id == bindparam("account"),
        Handoff.intent == Intent.ESCALATE,
        Handoff.status == HandoffStatus.OPEN,
        Handoff.created_by != bindparam("claimer"),
        _CLAIMER_MAY_HOLD_WORK,
    )
    .values(
        status=HandoffStatus.CLAIMED,
        claimed_by=bindparam("claimer"),
        claimed_at=bindparam("moment"),
        claimed_step=Handoff.policy_step,
    )
    .returning(Handoff)
    .execution_options(synchronize_session=False, populate_existing=True)
)
_HOLDER = aliased(User)
_CLAIMER = aliased(User)
_WHY_NOT_CLAIMED = (
    select(
        Handoff.intent,
        Handoff.status,
        Handoff.created_by,
        Handoff.claimed_by,
        Handoff.account_id,
        Handoff.session_id,
        _HOLDER.name.label("holder_name"),
        select(_CLAIMER.role)
        .where(_CLAIMER.id == bindparam("claimer"), _CLAIMER.deleted_at.is_(None))
        .scalar_subquery()
        .label("claimer_role"),
    )
    .outerjoin(_HOLDER, _HOLDER.id == Handoff.claimed_by)
    .where(
        Handoff.id == bindparam("handoff"),
        Handoff.session_id == bindparam("session"),
        # ``_visible_handoffs``: the account's escalations, and one's own parks.
        Handoff.account_id == bindparam("account"),
        (Handoff.intent == Intent.ESCALATE) | (Handoff.created_by == bindparam("claimer")),
    )
)


async def claim_handoff(
    *,
    db: AsyncSession,
    actor: User,
    session_id: str,
    handoff_id: str,
    turn: Turn | None = None,
) -> Handoff:
    """Pick Up: exactly one of any number of simultaneous claimers wins.

    One statement decides: the conditional ``UPDATE … WHERE status = 'open' … RETURNING`` that
    also checks, in the same statement, that the handoff is a visible escalation raised by
    someone else and that the claimer may still hold work. Only when it changed nothing is the
    handoff read again, to say why (in the order the checks were always made: not found, not
    an escalation, your own, your role, already picked up and by whom).

    The claimer's user row is share-locked by that statement (``FOR SHARE`` in its
    ``EXISTS``). A demotion or removal takes the same row (``FOR NO KEY UPDATE``) before it
    releases what the user holds, so the two serialise: a claim that commits first is released
    by the role change that follows; a role change that commits first is seen here and the
    claim refused. Without the lock a claim could land between the demotion's release and its
    commit and leave the escalation held by a viewer or by someone removed. SQLite's write
    lock, taken at ``BEGIN IMMEDIATE``, serialises the two already (``FOR SHARE`` is not
    rendered there). Lock order, everywhere: account → the user's credentials → user →
    handoff → session.

    With a ``turn`` (see :func:`claim_in_turn`), what a lost claim read is kept in it.
    """
    now = utcnow()
    params = _claim_params(actor, session_id, handoff_id)
    handoff: Handoff | None = (
        await db.execute(_CLAIM, {**params, "moment": now})
    ).scalar_one_or_none()
    if handoff is None:
        raise await _why_not_claimed(db, actor, params, turn)
    await outbox.skip_pending_policy_deliveries(
        db=db, handoff_id=handoff.id, reason=f"picked up by {actor.name} before it was sent"
    )
    # Replaces the escalation's schedule with the claim's (``leave_queue``'s first half).
    await watch_claim(db, handoff, activity_at=now, reminded=False)
    await sessions.set_status(db, session_id, SessionStatus.CLAIMED, now, assigned_to=actor.id)
    await publish(db, handoff, "handoff.claimed")
    return handoff


async def _why_not_claimed(
    db: AsyncSession, actor: User, params: dict[str, Any], turn: Turn | None
) -> Exception:
    """The answer to a claim that changed nothing, from one read made after it."""
    # Open again already (released in between): the claim still changed nothing.
    return await _why_not(db, actor, params, turn) or Conflict(
        "This escalation is open", claimed_by=None
    )


async def _why_not(
    db: AsyncSession | AsyncConnection, actor: User, params: dict[str, Any], turn: Turn | None
) -> Exception | None:
    """Why ``actor`` can't pick the handoff up as one read finds it now; None while it is an
    open escalation they may pick up."""
    found = await _read_claimable(db, actor, params, turn)
    if found is None:
        return NotFound("Handoff not found")
    facts, claimer_role = found
    return _refusal(actor, facts, claimer_role=claimer_role)


async def _read_claimable(
    db: AsyncSession | AsyncConnection, actor: User, params: dict[str, Any], turn: Turn | None
) -> tuple[ClaimFacts, str | None] | None:
    """The handoff as ``actor`` may see it, with their current role (None if removed); kept
    in ``turn`` for the claims waiting on it."""
    at = time.monotonic()
    row = (await db.execute(_WHY_NOT_CLAIMED, params)).one_or_none()
    if row is None:
        return None
    facts = ClaimFacts(
        intent=row.intent,
        status=row.status,
        created_by=row.created_by,
        claimed_by=row.claimed_by,
        holder_name=row.holder_name,
    )
    if turn is not None:
        turn.seen = Seen(at=at, account_id=row.account_id, session_id=row.session_id, facts=facts)
    return facts, row.claimer_role


def _refusal(actor: User, facts: ClaimFacts, *, claimer_role: str | None) -> Exception | None:
    """Why a visible handoff can't be picked up by ``actor``, checked in this order; None
    while it is an open escalation that ``actor`` may pick up."""
    if facts.intent != Intent.ESCALATE:
        return Conflict("Only an escalation can be picked up", claimed_by=None)
    if facts.created_by == actor.id:
        return Forbidden("You can't pick up your own escalation")
    if claimer_role is None:
        return Unauthorized("Invalid or revoked API token")
    if not is_senior(claimer_role):
        return Forbidden("Engineer or admin access required")
    if facts.status == HandoffStatus.CLAIMED and facts.claimed_by is not None:
        name = facts.holder_name or "a former member"
        return Conflict(
            f"Already picked up by {name}", claimed_by={"id": facts.claimed_by, "name": name}
        )
    if facts.status == HandoffStatus.CLAIMED:
        return Conflict("Already picked up by someone else", claimed_by=None)
    if facts.status != HandoffStatus.OPEN:
        return Conflict(f"This escalation is {facts.status}", claimed_by=None)
    return None


async def claim_in_turn(
    *,
    db: AsyncSession,
    gate: ClaimGate,
    actor: User,
    session_id: str,
    handoff_id: str,
    reads: AsyncEngine | None = None,
) -> Handoff:
    """:func:`claim_handoff`, committed, taking its turn at this process's :class:`ClaimGate`:
    a burst of claims on one escalation makes few attempts, and the claims that waited are
    answered from what an attempt found (see :mod:`lifeline.handoffs.claim_gate`).

    With ``reads`` (PostgreSQL's statements outside a transaction), an attempt looks before
    it claims: most claims in a burst arrive after the escalation was picked up, and one read
    of what is committed answers them, where the claim itself costs ``BEGIN``, an ``UPDATE``
    that changes nothing, the same read and ``ROLLBACK``. Only a claim that finds the
    escalation open, and that it may pick up, goes on to the conditional ``UPDATE``, which
    alone decides, as before.

    Commits the request's unit of work, so that a claim is only ever answered from a claim
    that is durable.
    """
    async with gate.turn(handoff_id, account_id=actor.account_id, session_id=session_id) as turn:
        if turn.answer is not None:
            raise _refusal(actor, turn.answer, claimer_role=actor.role) or AssertionError(
                "a settled claim is never open"
            )
        if reads is not None:
            async with reads.connect() as read:
                refusal = await _why_not(
                    read, actor, _claim_params(actor, session_id, handoff_id), turn
                )
            if refusal is not None:
                raise refusal
        handoff = await claim_handoff(
            db=db, actor=actor, session_id=session_id, handoff_id=handoff_id, turn=turn
        )
        await db.commit()
        turn.seen = Seen(
            at=time.monotonic(),
            account_id=handoff.account_id,
            session_id=handoff.session_id,
            facts=ClaimFacts(
                intent=handoff.intent,
                status=handoff.status,
                created_by=handoff.created_by,
                claimed_by=handoff.claimed_by,
                holder_name=actor.name,
            ),
        )
    return handoff


def _claim_params(actor: User, session_id: str, handoff_id: str) -> dict[str, Any]:
    return {
        "handoff": handoff_id,
        "session": session_id,
        "account": actor.account_id,
        "claimer": actor.id,
    }


async def watch_claim(
    db: AsyncSession, handoff: Handoff, *, activity_at: datetime, reminded: bool
) -> None:
    assert handoff.claimed_at is not None
    await schedule.watch_claim(
        db=db,
        handoff_id=handoff.id,
        account_id=handoff.account_id,
        policy=policy_of(handoff),
        claimed_at=handoff.claimed_at,
        activity_at=activity_at,
        reminded=reminded,
        round_=handoff.policy_round,
    )


async def release_handoff(
    *, db: AsyncSession, actor: User, session_id: str, handoff_id: str, email_cap: int
) -> Handoff:
    """The claimer puts it back in the queue; the team is told again.

    The account's owner may release any escalation whoever holds it: the escape hatch for work
    held by someone who can't or won't let it go. It is logged and announced as a release.
    """
    handoff = await get_handoff(db=db, user=actor, session_id=session_id, handoff_id=handoff_id)
    holder = handoff.claimed_by
    if holder != actor.id:
        if actor.role != Role.OWNER or handoff.intent != Intent.ESCALATE:
            raise Forbidden("Only the engineer who picked it up can release it")
        if holder is None:
            raise Conflict(f"This escalation is {handoff.status}", claimed_by=None)
    if not await requeue(db, handoff, holder, released_by=actor.id, email_cap=email_cap):
        raise Conflict(f"This escalation is {handoff.status}", claimed_by=None)
    if holder != actor.id:
        log.info(
            "owner %s released escalation %s (session %s) held by %s",
            actor.id,
            handoff.id,
            handoff.session_id,
            holder,
            extra={"handoff_id": handoff.id, "released_by": actor.id, "claimer_id": holder},
        )
    return handoff


async def requeue(
    db: AsyncSession,
    handoff: Handoff,
    claimer_id: str,
    *,
    email_cap: int,
    released_by: str | None = None,
    tell_claimer: bool = False,
) -> bool:
    """Back to the queue if ``claimer_id`` still holds it: unassign, announce, and its policy
    starts over from step 1. Whoever released it is left out of that wave (the claimer, or the
    owner who released someone else's), and the claimer too unless ``tell_claimer``."""
    now = utcnow()
    won = await _conditional_update(
        db,
        handoff,
        [Handoff.status == HandoffStatus.CLAIMED, Handoff.claimed_by == claimer_id],
        {
            "status": HandoffStatus.OPEN,
            "claimed_by": None,
            "claimed_at": None,
            "queued_at": now,
            "policy_round": Handoff.policy_round + 1,
            "policy_step": 0,
        },
    )
    if not won:
        return False
    await leave_queue(db, handoff, "released before it was sent")
    await sessions.set_status(
        db, handoff.session_id, SessionStatus.ESCALATED, now, assigned_to=None
    )
    await publish(db, handoff, "handoff.released")
    # The one who let it go knows already: the wave is for the rest of the team.
    await _start_policy(
        db,
        handoff,
        DeliveryKind.RELEASED,
        email_cap=email_cap,
        exclude_user_id=None if tell_claimer else (released_by or claimer_id),
    )
    return True


async def release_claims_of(*, db: AsyncSession, user: User, email_cap: int) -> list[Handoff]:
    """Everything ``user`` has picked up goes back to the queue (they are leaving the team)."""
    held = (
        await db.scalars(
            select(Handoff).where(
                Handoff.account_id == user.account_id,
                Handoff.claimed_by == user.id,
                Handoff.status == HandoffStatus.CLAIMED,
            )
        )
    ).all()
    return [handoff for handoff in held if await requeue(db, handoff, user.id, email_cap=email_cap)]


async def resolve_handoff(
    *,
    db: AsyncSession,
    actor: User,
    session_id: str,
    handoff_id: str,
    answer: str | None = None,
) -> Handoff:
    """Done. An escalation is resolved by its claimer; a park by its creator (resuming it).

    ``answer`` is handed back to whoever escalated (an agent waiting on it, for one).
    """
    handoff = await get_handoff(db=db, user=actor, session_id=session_id, handoff_id=handoff_id)
    now = utcnow()
    values: dict[str, Any] = {
        "status": HandoffStatus.RESOLVED,
        "resolved_by": actor.id,
        "resolved_at": now,
    }
    if answer:
        values["answer"] = answer
    if handoff.intent == Intent.PARK:
        guard = [Handoff.status == HandoffStatus.OPEN, Handoff.created_by == actor.id]
        session_status = SessionStatus.ACTIVE
    else:
        if handoff.claimed_by != actor.id:
            raise Forbidden("Only the engineer who picked it up can resolve it")
        guard = [Handoff.status == HandoffStatus.CLAIMED, Handoff.claimed_by == actor.id]
        session_status = SessionStatus.RESOLVED
    if not await _conditional_update(db, handoff, guard, values):
        raise Conflict(f"This handoff is {handoff.status}", claimed_by=None)
    await leave_queue(db, handoff, f"resolved by {actor.name} before it was sent")
    await sessions.set_status(db, session_id, session_status, now)
    await publish(db, handoff, "handoff.resolved")
    return handoff


async def cancel_handoff(
    *, db: AsyncSession, actor: User, session_id: str, handoff_id: str
) -> Handoff:
    """The escalator withdraws it (open or picked up); a park's creator drops the park."""
    handoff = await get_handoff(db=db, user=actor, session_id=session_id, handoff_id=handoff_id)
    if handoff.created_by != actor.id:
        raise Forbidden("Only the engineer who escalated it can cancel it")
    now = utcnow()
    won = await _conditional_update(
        db,
        handoff,
        [Handoff.status.in_([HandoffStatus.OPEN, HandoffStatus.CLAIMED])],
        {"status": HandoffStatus.CANCELLED, "cancelled_at": now},
    )
    if not won:
        raise Conflict(f"This handoff is {handoff.status}", claimed_by=None)
    await leave_queue(db, handoff, f"cancelled by {actor.name} before it was sent")
    if handoff.intent == Intent.ESCALATE:
        # Withdrawn from the team: whoever had picked it up no longer holds the session.
        await sessions.set_status(db, session_id, SessionStatus.ACTIVE, now, assigned_to=None)
    else:
        await sessions.set_status(db, session_id, SessionStatus.ACTIVE, now)
    await publish(db, handoff, "handoff.cancelled")
    return handoff


async def team_queue(
    *, db: AsyncSession, user: User, status: HandoffStatus, cursor: str | None, limit: int
) -> tuple[list[tuple[Handoff, AISession, User]], str | None]:
    """The account's escalations in ``status`` (open or claimed), oldest first."""
    escalator = aliased(User)
    query = (
        select(Handoff, AISession, escalator)
        .join(AISession, AISession.id == Handoff.session_id)
        .join(escalator, escalator.id == Handoff.created_by)
        .where(
            Handoff.account_id == user.account_id,
            Handoff.intent == Intent.ESCALATE,
            Handoff.status == status,
        )
    )
    query = keyset(
        query, Handoff.created_at, Handoff.id, cursor=cursor, limit=limit, descending=False
    )
    rows = [(h, s, u) for h, s, u in (await db.execute(query)).all()]
    return page(rows, limit, lambda r: (r[0].created_at, r[0].id))


# What the API's queue shows of each escalation: the handoff's own fields (``HandoffRead``),
# the session's title and the escalator's name, and nothing else.
_QUEUE_COLUMNS = (
    Handoff.id,
    Handoff.session_id,
    Handoff.intent,
    Handoff.status,
    Handoff.note,
    Handoff.brief,
    Handoff.answer,
    Handoff.created_by,
    Handoff.created_at,
    Handoff.claimed_by,
    Handoff.claimed_at,
    Handoff.resolved_by,
    Handoff.resolved_at,
    AISession.title.label("session_title"),
    User.name.label("escalator_name"),
)


def queue_query(
    *, account_id: str, status: HandoffStatus, cursor: str | None, limit: int
) -> Select[Any]:
    """The statement behind the API's team queue: the columns it shows, no whole rows."""
    query = (
        select(*_QUEUE_COLUMNS)
        .join(AISession, AISession.id == Handoff.session_id)
        .join(User, User.id == Handoff.created_by)
        .where(
            Handoff.account_id == account_id,
            Handoff.intent == Intent.ESCALATE,
            Handoff.status == status,
        )
    )
    return keyset(
        query, Handoff.created_at, Handoff.id, cursor=cursor, limit=limit, descending=False
    )


async def team_queue_rows(
    *, db: AsyncSession, user: User, status: HandoffStatus, cursor: str | None, limit: int
) -> tuple[list[Row[Any]], str | None]:
    """``team_queue`` as plain rows of the columns the API shows (see ``queue_query``)."""
    query = queue_query(account_id=user.account_id, status=status, cursor=cursor, limit=limit)
    rows = list((await db.execute(query)).all())
    return page(rows, limit, lambda r: (r.created_at, r.id))


def may_read_deliveries(user: User, handoff: Handoff) -> bool:
    return is_manager(user) or handoff.created_by == user.id
