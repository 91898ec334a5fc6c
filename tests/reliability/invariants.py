"""The invariants every fault must leave intact, checked against the database and the SMTP server.

- no handoff lost: every 201 the clients saw is in the database, as answered;
- nothing created twice: a retried creation (same Idempotency-Key) made one session, one handoff;
- no double claim: at most one 200 per Pick Up race, the database agrees, one claimed event;
- no notification lost: every escalation has its wave (a row per recipient per channel), and
  every row ended ``sent`` or ``skipped`` or is still ``pending`` and claimable by a sweep;
- none duplicated: the SMTP server saw each (recipient, Message-ID) at most once, except the
  resends a test recorded for a crash between SMTP's acceptance and the row's update (same
  Message-ID), and every ``sent`` email row was really received.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import SENIOR_ROLES, User
from lifeline.ai_sessions.models import AISession
from lifeline.db import create_engine, create_sessionmaker, utcnow
from lifeline.handoffs.models import Handoff, Intent
from lifeline.notifications.models import Channel, Delivery, DeliveryKind, DeliveryStatus
from lifeline.realtime.models import Event
from tests.reliability.load import LoadRecord
from tests.support.smtp import Received


@dataclass
class Findings:
    """What the check counted, and every violation it found (empty when all is well)."""

    handoffs: int = 0
    deliveries: Counter[str] = field(default_factory=Counter)
    emails_received: int = 0
    resends: int = 0
    violations: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.violations.append(message)


async def _all(db: AsyncSession, model: Any) -> list[Any]:
    return list(await db.scalars(select(model)))


def _check_answers(found: Findings, record: LoadRecord, handoffs: dict[str, Handoff]) -> None:
    for hid, answered in record.handoffs.items():
        stored = handoffs.get(hid)
        if stored is None:
            found.fail(f"handoff {hid} was answered 201 and is not in the database")
        elif (stored.session_id, stored.intent, stored.created_by) != (
            answered["session_id"],
            answered["intent"],
            answered["created_by"],
        ):
            found.fail(f"handoff {hid} differs from its 201 answer")


def _check_claims(
    found: Findings, record: LoadRecord, handoffs: dict[str, Handoff], claimed_events: Counter[str]
) -> None:
    for hid, attempts in record.claims.items():
        winners = [who for who, status in attempts if status == 200]
        if len(winners) > 1:
            found.fail(f"handoff {hid} was picked up {len(winners)} times: {winners}")
        stored = handoffs.get(hid)
        if stored is None:
            continue
        unanswered = {who for who, status in attempts if status is None or status >= 500}
        if winners and stored.claimed_by != winners[0]:
            found.fail(f"handoff {hid}: 200 to {winners[0]}, database says {stored.claimed_by}")
        if not winners and stored.claimed_by is not None and stored.claimed_by not in unanswered:
            found.fail(f"handoff {hid} claimed by {stored.claimed_by} whom nobody answered 200")
    for hid, count in claimed_events.items():
        if count > 1:
            found.fail(f"handoff {hid} has {count} handoff.claimed events")


def _check_waves(
    found: Findings,
    handoffs: Iterable[Handoff],
    users: list[User],
    rows: list[Delivery],
    max_attempts: int,
) -> None:
    now = utcnow()
    by_wave: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        by_wave.setdefault(row.event_key, set()).add((row.recipient_user_id, row.channel))
        found.deliveries[row.status] += 1
        if row.status in (DeliveryStatus.SENT, DeliveryStatus.SKIPPED):
            continue
        claimable = (
            row.status == DeliveryStatus.PENDING
            and row.attempts < max_attempts
            and (row.lease_expires_at is None or row.lease_expires_at <= now)
        )
        if not claimable:
            found.fail(
                f"delivery {row.id} ({row.channel} to {row.recipient_user_id}) is {row.status}"
                f" after {row.attempts} attempts: {row.last_error}"
            )
    for handoff in handoffs:
        if handoff.intent != Intent.ESCALATE:
            continue
        # Nobody's role changes in these tests: the wave goes to today's seniors.
        expected = {
            (u.id, str(channel))
            for u in users
            if u.account_id == handoff.account_id
            and u.role in {str(r) for r in SENIOR_ROLES}
            and u.deleted_at is None
            and u.id != handoff.created_by
            # A person is told by push and email; webhooks and Slack follow events, not people.
            for channel in (Channel.PUSH, Channel.EMAIL)
        }
        got = by_wave.get(f"{handoff.id}:{DeliveryKind.ESCALATED}", set())
        if got != expected:
            found.fail(f"escalation {handoff.id}: wave has {len(got)} rows, {len(expected)} due")


def _check_mail(
    found: Findings,
    rows: list[Delivery],
    emails: dict[str, str],
    received: list[Received],
    allowed_resends: set[tuple[str, str]],
) -> None:
    copies = Counter((rcpt, m.message_id) for m in received for rcpt in m.rcpt_tos)
    found.emails_received = sum(copies.values())
    known = {
        (emails[r.recipient_user_id], r.message_id) for r in rows if r.channel == Channel.EMAIL
    }
    for (rcpt, message_id), count in copies.items():
        if (rcpt, message_id) not in known:
            found.fail(f"{rcpt} got {message_id}, which no delivery row names")
        if count > 1:
            if (rcpt, message_id) in allowed_resends and count == 2:
                found.resends += 1
            else:
                found.fail(f"{rcpt} got {message_id} {count} times")
    sent = [r for r in rows if r.channel == Channel.EMAIL and r.status == DeliveryStatus.SENT]
    for row in sent:
        if copies[(emails[row.recipient_user_id], row.message_id)] == 0:
            found.fail(f"delivery {row.id} says sent; the SMTP server never got it")


async def check(
    database_url: str,
    *,
    record: LoadRecord | None = None,
    received: list[Received] | None = None,
    allowed_resends: set[tuple[str, str]] | None = None,
    max_attempts: int = 6,
) -> Findings:
    """Every invariant over the whole database (and the load's answers and the mail, if given)."""
    engine = create_engine(database_url)
    found = Findings()
    try:
        async with create_sessionmaker(engine)() as db:
            handoffs = {h.id: h for h in await _all(db, Handoff)}
            users = await _all(db, User)
            rows = await _all(db, Delivery)
            claimed_events = Counter(
                str(e.payload.get("id"))
                for e in await db.scalars(select(Event).where(Event.type == "handoff.claimed"))
            )
            if record is not None:
                per_title: dict[str, int] = dict(
                    (  # type: ignore[arg-type]
                        await db.execute(
                            select(AISession.title, func.count()).group_by(AISession.title)
                        )
                    ).all()
                )
                for sid, title in record.sessions.items():
                    if per_title.get(title, 0) != 1:
                        found.fail(f"session {title!r} ({sid}) stored {per_title.get(title)} times")
    finally:
        await engine.dispose()
    found.handoffs = len(handoffs)
    if record is not None:
        _check_answers(found, record, handoffs)
        _check_claims(found, record, handoffs, claimed_events)
    _check_waves(found, handoffs.values(), users, rows, max_attempts)
    if received is not None:
        emails = {u.id: u.email for u in users}
        _check_mail(found, rows, emails, received, allowed_resends or set())
    return found


async def wait_settled(database_url: str, *, within: float = 60.0) -> Counter[str]:
    """Wait (bounded) until no delivery row is pending: the senders have caught up."""
    engine = create_engine(database_url)
    deadline = time.monotonic() + within
    try:
        while True:
            async with create_sessionmaker(engine)() as db:
                counts = Counter(
                    dict(
                        (
                            await db.execute(
                                select(Delivery.status, func.count()).group_by(Delivery.status)
                            )
                        ).all()
                    )
                )
            if counts[DeliveryStatus.PENDING] == 0:
                return counts
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries still pending after {within}s: {dict(counts)}")
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


async def pending(database_url: str) -> set[tuple[str, str]]:
    """(recipient id, channel) of every delivery row still pending."""
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            rows = await db.execute(
                select(Delivery.recipient_user_id, Delivery.channel).where(
                    Delivery.status == DeliveryStatus.PENDING
                )
            )
            return {(user_id, channel) for user_id, channel in rows}
    finally:
        await engine.dispose()
