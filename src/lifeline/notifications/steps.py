"""The escalation scheduler: fires due policy steps, expires, reminds and auto-releases.

Run by ``lifeline worker`` and by the server's own sweep. Due schedule rows are leased in one
short transaction; then each is acted on in a transaction of its own, so one failure never
holds up the others, and a row whose lease was lost (a slow sweeper overtaken) is left alone.
``now`` is the scheduler's clock (tests move it); leases are judged by the real one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline.after_commit import AfterCommitRunner
from lifeline.db import unit_of_work, utcnow
from lifeline.handoffs import service as handoffs
from lifeline.handoffs import timeouts
from lifeline.handoffs.models import Handoff, HandoffStatus
from lifeline.notifications import outbox
from lifeline.policies import schedule
from lifeline.policies.models import SchedulePhase
from lifeline.policies.schedule import LeasedEntry
from lifeline.policies.timeline import StepRef, expires_at, following, latest_due

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# Batches per call at most: rows whose work keeps failing are due again at once, and must not
# keep one sweep going round forever.
MAX_BATCHES = 100
# Long enough for one batch's transactions; a sweeper that dies leaves its rows for this long.
LEASE = timedelta(seconds=60)


class LeaseLost(Exception):
    """Another sweeper holds this row now (our lease ran out): undo and leave it to them."""


RecipientsKey = tuple[str, str, tuple[str, ...], tuple[str, ...]]


@dataclass
class StepCounts:
    steps: int = 0
    expired: int = 0
    claim_reminders: int = 0
    auto_released: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))

    @property
    def total(self) -> int:
        return self.steps + self.expired + self.claim_reminders + self.auto_released


@dataclass
class _Batch:
    """What one leased batch shares: the handoffs as read when leased, the hourly email cap,
    and per account the recipients of each step and the emails left this hour, each looked up
    once."""

    handoffs: dict[str, Handoff]
    email_cap: int
    recipients: dict[RecipientsKey, list[outbox.WaveRecipient]] = field(default_factory=dict)
    allowances: dict[str, outbox.EmailAllowance] = field(default_factory=dict)

    async def recipients_of(
        self, db: AsyncSession, handoff: Handoff, roles: list[str], users: list[str]
    ) -> list[outbox.WaveRecipient]:
        key = (handoff.account_id, handoff.created_by, tuple(roles), tuple(users))
        if key not in self.recipients:
            self.recipients[key] = await outbox.step_recipients(
                db=db, handoff=handoff, roles=roles, user_ids=users
            )
        return self.recipients[key]

    async def allowance_of(self, db: AsyncSession, account_id: str) -> outbox.EmailAllowance:
        if account_id not in self.allowances:
            self.allowances[account_id] = await outbox.email_allowance(
                db=db, account_id=account_id, email_cap=self.email_cap
            )
        return self.allowances[account_id]


async def _act_on_policy(
    db: AsyncSession, entry: LeasedEntry, now: datetime, counts: StepCounts, batch: _Batch
) -> None:
    handoff = batch.handoffs.get(entry.handoff_id)
    if (
        handoff is None
        or handoff.status != HandoffStatus.OPEN
        or handoff.policy_round != entry.round
    ):
        # Its transition removed or replaced the row already; this lease is stale.
        return
    policy = handoffs.policy_of(handoff)
    origin = handoff.queued_at
    deadline = expires_at(policy, origin)
    if deadline is not None and deadline <= now:
        if await timeouts.expire(
            db=db, handoff_id=handoff.id, round_=entry.round, now=now, email_cap=batch.email_cap
        ):
            counts.expired += 1
        return
    due = None
    if entry.step < len(policy.steps):
        due = latest_due(policy, origin, StepRef(entry.step, entry.loop), now)
    if due is not None:
        step = policy.steps[due.step]
        recipients = await batch.recipients_of(
            db, handoff, [str(r) for r in step.notify.roles], step.notify.users
        )
        allowance = (
            await batch.allowance_of(db, handoff.account_id) if "email" in step.channels else None
        )
        fired = await timeouts.fire_step(
            db=db,
            handoff=handoff,
            round_=entry.round,
            ref=due,
            recipients=recipients,
            email_cap=batch.email_cap,
            allowance=allowance,
        )
        if not fired:
            return
        counts.steps += 1
        next_ref = following(policy, due)
    else:
        next_ref = StepRef(entry.step, entry.loop) if entry.step < len(policy.steps) else None
    if not await schedule.advance(
        db=db, entry=entry, policy=policy, origin=origin, next_ref=next_ref
    ):
        if due is not None:
            counts.steps -= 1
        raise LeaseLost(handoff.id)


async def _act_on_claim(
    db: AsyncSession, entry: LeasedEntry, now: datetime, counts: StepCounts, batch: _Batch
) -> None:
    done = await timeouts.check_claim(
        db=db,
        handoff_id=entry.handoff_id,
        round_=entry.round,
        reminded=entry.step == 1,
        now=now,
        email_cap=batch.email_cap,
    )
    if done == "released":
        counts.auto_released += 1
    elif done == "reminded":
        counts.claim_reminders += 1


async def run_due(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    runner: AfterCommitRunner,
    now: datetime,
    email_cap: int,
    limit: int = BATCH_SIZE,
) -> StepCounts:
    """Everything due at ``now``, in leased batches until none is left; the waves they write
    send at most ``email_cap`` emails per account per hour (``Settings.email_cap_per_hour``)."""
    counts = StepCounts()
    for _batch in range(MAX_BATCHES):
        clock = utcnow()
        async with sessionmaker() as db, db.begin():
            entries = await schedule.lease_due(
                db=db, now=now, lease_until=clock + LEASE, clock=clock, limit=limit
            )
            policy_ids = [e.handoff_id for e in entries if e.phase == SchedulePhase.POLICY]
            read = await db.scalars(select(Handoff).where(Handoff.id.in_(policy_ids)))
            batch = _Batch(handoffs={h.id: h for h in read}, email_cap=email_cap)
        for entry in entries:
            act = _act_on_policy if entry.phase == SchedulePhase.POLICY else _act_on_claim
            try:
                async with unit_of_work(sessionmaker, runner) as db:
                    await act(db, entry, now, counts, batch)
            except LeaseLost:
                log.info("schedule of %s was taken over; left to its holder", entry.handoff_id)
            except Exception:
                log.exception("scheduled work on handoff %s failed", entry.handoff_id)
                try:
                    async with sessionmaker() as db, db.begin():
                        await schedule.give_back(db=db, entry=entry)
                except Exception:
                    log.warning("could not give back the lease on %s", entry.handoff_id)
        if len(entries) < limit:
            break
    return counts
