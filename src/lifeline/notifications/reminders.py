"""Escalation policy: an escalation nobody picked up in time gets one reminder wave."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline.accounts.models import Account
from lifeline.after_commit import AfterCommitRunner
from lifeline.db import unit_of_work
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent
from lifeline.handoffs.service import handoff_data
from lifeline.notifications import outbox
from lifeline.notifications.models import DeliveryKind
from lifeline.realtime.events import AUDIENCE_ACCOUNT, record_event

log = logging.getLogger(__name__)

# Accounts can't set a reminder interval below this, so older candidates are all we look at.
MIN_REMINDER = timedelta(minutes=1)


async def due_reminders(*, db: AsyncSession, now: datetime) -> list[tuple[str, datetime]]:
    """Open escalations past their account's reminder interval, not yet reminded: (id, queued)."""
    rows = (
        await db.execute(
            select(Handoff.id, Handoff.queued_at, Account.reminder_minutes)
            .join(Account, Account.id == Handoff.account_id)
            .where(
                Handoff.intent == Intent.ESCALATE,
                Handoff.status == HandoffStatus.OPEN,
                Handoff.reminded_at.is_(None),
                Handoff.queued_at <= now - MIN_REMINDER,
            )
            .order_by(Handoff.queued_at)
        )
    ).all()
    return [
        (hid, queued_at)
        for hid, queued_at, minutes in rows
        if queued_at + timedelta(minutes=minutes) <= now
    ]


async def send_reminder(
    *, db: AsyncSession, handoff_id: str, queued_at: datetime, now: datetime
) -> bool:
    """Mark it reminded and enqueue the wave, both or neither; False if someone else did."""
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        update(Handoff)
        .where(
            Handoff.id == handoff_id,
            Handoff.status == HandoffStatus.OPEN,
            Handoff.reminded_at.is_(None),
            # Released and requeued meanwhile: its clock restarted, not due yet.
            Handoff.queued_at == queued_at,
        )
        .values(reminded_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        return False
    handoff = await db.get(Handoff, handoff_id, populate_existing=True)
    assert handoff is not None
    await record_event(
        db=db,
        account_id=handoff.account_id,
        type="handoff.reminder",
        audience=AUDIENCE_ACCOUNT,
        data=handoff_data(handoff),
    )
    await outbox.enqueue_wave(db=db, handoff=handoff, kind=DeliveryKind.REMINDER)
    return True


async def send_due_reminders(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    runner: AfterCommitRunner,
    now: datetime,
) -> int:
    """One transaction per escalation, so one failure never holds up the others."""
    async with sessionmaker() as db, db.begin():
        due = await due_reminders(db=db, now=now)
    sent = 0
    for handoff_id, queued_at in due:
        try:
            async with unit_of_work(sessionmaker, runner) as db:
                if await send_reminder(db=db, handoff_id=handoff_id, queued_at=queued_at, now=now):
                    sent += 1
        except Exception:
            log.exception("reminder for handoff %s failed", handoff_id)
    return sent
