"""The schedule table: what happens next to each open or claimed escalation, and when.

Writers are the hand-off transitions (start, restart, stop, all in their own transaction) and
the sweeper, which leases due rows first (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; on SQLite
the statement runs alone) so that two sweepers never act on one row, then acts on each under
its lease token.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, delete, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.policies.models import EscalationSchedule, SchedulePhase
from lifeline.policies.schemas import EscalationPolicy
from lifeline.policies.timeline import StepRef, next_moment


@dataclass(frozen=True)
class LeasedEntry:
    """A due schedule row this sweeper holds; background work takes ids, not ORM objects."""

    handoff_id: str
    account_id: str
    phase: SchedulePhase
    next_step_at: datetime
    step: int
    loop: int
    round: int
    lease_token: str


async def stop(*, db: AsyncSession, handoff_id: str) -> None:
    """Nothing more is scheduled for this escalation (claimed, resolved, cancelled, expired)."""
    await db.execute(
        delete(EscalationSchedule)
        .where(EscalationSchedule.handoff_id == handoff_id)
        .execution_options(synchronize_session=False)
    )


async def _put(
    db: AsyncSession,
    *,
    handoff_id: str,
    account_id: str,
    phase: SchedulePhase,
    at: datetime | None,
    step: int,
    loop: int,
    round_: int,
) -> None:
    """The escalation's one schedule row becomes this (or goes, with no ``at``), in one
    statement: an insert that replaces whatever row was there, lease and all."""
    if at is None:
        await stop(db=db, handoff_id=handoff_id)
        return
    values = {
        "phase": phase,
        "next_step_at": at,
        "step": step,
        "loop": loop,
        "round": round_,
        "lease_token": None,
        "lease_expires_at": None,
    }
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    await db.execute(
        insert(EscalationSchedule)
        .values(handoff_id=handoff_id, account_id=account_id, **values)
        .on_conflict_do_update(index_elements=[EscalationSchedule.handoff_id], set_=values)
    )


async def follow_policy(
    *,
    db: AsyncSession,
    handoff_id: str,
    account_id: str,
    policy: EscalationPolicy,
    origin: datetime,
    next_ref: StepRef | None,
    round_: int,
) -> None:
    """Schedule ``next_ref`` (or only the expiry, once the steps are done)."""
    await _put(
        db,
        handoff_id=handoff_id,
        account_id=account_id,
        phase=SchedulePhase.POLICY,
        at=next_moment(policy, origin, next_ref),
        step=next_ref.step if next_ref else len(policy.steps),
        loop=next_ref.loop if next_ref else policy.repeat,
        round_=round_,
    )


def claim_moment(
    policy: EscalationPolicy, *, claimed_at: datetime, activity_at: datetime, reminded: bool
) -> datetime | None:
    """When a claimed escalation next needs looking at: its reminder or its auto-release."""
    moments = []
    if policy.claim_reminder_minutes is not None and not reminded:
        moments.append(claimed_at + timedelta(minutes=policy.claim_reminder_minutes))
    if policy.auto_release_minutes is not None:
        moments.append(activity_at + timedelta(minutes=policy.auto_release_minutes))
    return min(moments) if moments else None


async def watch_claim(
    *,
    db: AsyncSession,
    handoff_id: str,
    account_id: str,
    policy: EscalationPolicy,
    claimed_at: datetime,
    activity_at: datetime,
    reminded: bool,
    round_: int,
) -> None:
    await _put(
        db,
        handoff_id=handoff_id,
        account_id=account_id,
        phase=SchedulePhase.CLAIMED,
        at=claim_moment(policy, claimed_at=claimed_at, activity_at=activity_at, reminded=reminded),
        step=1 if reminded else 0,
        loop=0,
        round_=round_,
    )


async def lease_due(
    *, db: AsyncSession, now: datetime, lease_until: datetime, clock: datetime, limit: int
) -> list[LeasedEntry]:
    """Lease up to ``limit`` rows due at ``now`` whose lease (judged by ``clock``) is free."""
    free = or_(
        EscalationSchedule.lease_expires_at.is_(None),
        EscalationSchedule.lease_expires_at <= clock,
    )
    candidates = (
        select(EscalationSchedule.handoff_id)
        .where(EscalationSchedule.next_step_at <= now, free)
        .order_by(EscalationSchedule.next_step_at)
        .limit(limit)
    )
    if db.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    token = str(uuid.uuid4())
    result = await db.execute(
        update(EscalationSchedule)
        .where(EscalationSchedule.handoff_id.in_(candidates.scalar_subquery()), free)
        .values(lease_token=token, lease_expires_at=lease_until)
        .returning(
            EscalationSchedule.handoff_id,
            EscalationSchedule.account_id,
            EscalationSchedule.phase,
            EscalationSchedule.next_step_at,
            EscalationSchedule.step,
            EscalationSchedule.loop,
            EscalationSchedule.round,
        )
        .execution_options(synchronize_session=False)
    )
    return [
        LeasedEntry(
            handoff_id=row.handoff_id,
            account_id=row.account_id,
            phase=SchedulePhase(row.phase),
            next_step_at=row.next_step_at,
            step=row.step,
            loop=row.loop,
            round=row.round,
            lease_token=token,
        )
        for row in result
    ]


async def give_back(*, db: AsyncSession, entry: LeasedEntry) -> None:
    """Drop the lease without acting (the step failed): the row is due again at once."""
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        update(EscalationSchedule)
        .where(
            EscalationSchedule.handoff_id == entry.handoff_id,
            EscalationSchedule.lease_token == entry.lease_token,
        )
        .values(lease_token=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    del result


async def advance(
    *,
    db: AsyncSession,
    entry: LeasedEntry,
    policy: EscalationPolicy,
    origin: datetime,
    next_ref: StepRef | None,
) -> bool:
    """Move this leased row on to ``next_ref`` (or drop it when nothing is left) and free it;
    False, changing nothing, if the lease is no longer ours."""
    at = next_moment(policy, origin, next_ref)
    held = (EscalationSchedule.handoff_id == entry.handoff_id) & (
        EscalationSchedule.lease_token == entry.lease_token
    )
    statement: Any
    if at is None:
        statement = delete(EscalationSchedule).where(held)
    else:
        statement = (
            update(EscalationSchedule)
            .where(held)
            .values(
                next_step_at=at,
                step=next_ref.step if next_ref else len(policy.steps),
                loop=next_ref.loop if next_ref else policy.repeat,
                lease_token=None,
                lease_expires_at=None,
            )
        )
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        statement.execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
