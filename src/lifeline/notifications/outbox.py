"""The transactional outbox: delivery rows written in the handoff's own transaction.

A wave is one notification event about one handoff (the escalation, a reminder, a release).
Each wave gets one row per recipient per channel, keyed ``{event_key}:{recipient}:{channel}``
so the same wave can never reach the same person twice. The rows commit or roll back with the
handoff; only after commit does a ``DispatchDeliveries`` intent hand them to the relay.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import distinct, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.accounts.models import SENIOR_ROLES, EmailPreference, User
from lifeline.db import utcnow
from lifeline.handoffs.models import Handoff, Intent
from lifeline.notifications.models import Channel, Delivery, DeliveryKind, DeliveryStatus

# The in-process dispatcher sends a wave right after commit; the relay's sweep leaves fresh rows
# alone for this long so that it picks up only what the dispatcher never got to (a crash, a
# process without the dispatcher), instead of racing it for every new row.
SWEEP_GRACE = timedelta(seconds=5)
# The right-hand side of every Message-ID: constant, so a resend from any process (server or
# worker, whatever its base URL) carries exactly the same id as the first attempt.
MESSAGE_ID_DOMAIN = "lifeline"
OPTED_OUT = "recipient opted out"


async def escalation_recipients(*, db: AsyncSession, handoff: Handoff) -> list[User]:
    """Active engineers, admins and owners of the handoff's account, minus the escalator."""
    rows = await db.scalars(
        select(User)
        .where(
            User.account_id == handoff.account_id,
            User.role.in_([str(r) for r in SENIOR_ROLES]),
            User.deleted_at.is_(None),
            User.id != handoff.created_by,
        )
        .order_by(User.created_at, User.id)
    )
    return list(rows)


async def wave_event_key(*, db: AsyncSession, handoff: Handoff, kind: DeliveryKind) -> str:
    """The escalation is one event; every reminder and every release is a new one, numbered."""
    if kind == DeliveryKind.ESCALATED:
        return f"{handoff.id}:escalated"
    earlier = await db.scalar(
        select(func.count(distinct(Delivery.event_key))).where(
            Delivery.handoff_id == handoff.id, Delivery.kind == kind
        )
    )
    return f"{handoff.id}:{kind}:{(earlier or 0) + 1}"


def message_id_for(event_key: str, recipient_id: str) -> str:
    """Deterministic per event and recipient, so a resend after a crash is the same message."""
    digest = hashlib.sha256(f"{event_key}\n{recipient_id}".encode()).hexdigest()[:40]
    return f"<{digest}@{MESSAGE_ID_DOMAIN}>"


def dedupe_key_for(event_key: str, recipient_id: str, channel: Channel) -> str:
    return f"{event_key}:{recipient_id}:{channel}"


async def enqueue_wave(*, db: AsyncSession, handoff: Handoff, kind: DeliveryKind) -> list[Delivery]:
    """Write one delivery row per recipient per channel for this wave of ``handoff``.

    Parks notify nobody. Email to someone whose preference is ``never`` is written as
    ``skipped`` so the audit trail shows they were considered; ``offline_only`` is decided at
    send time, when presence is known.
    """
    if handoff.intent != Intent.ESCALATE:
        return []
    recipients = await escalation_recipients(db=db, handoff=handoff)
    if not recipients:
        return []
    event_key = await wave_event_key(db=db, handoff=handoff, kind=kind)
    now = utcnow()
    rows: list[Delivery] = []
    for user in recipients:
        message_id = message_id_for(event_key, user.id)
        for channel in (Channel.PUSH, Channel.EMAIL):
            opted_out = channel == Channel.EMAIL and user.email_notifications == (
                EmailPreference.NEVER
            )
            rows.append(
                Delivery(
                    handoff_id=handoff.id,
                    account_id=handoff.account_id,
                    recipient_user_id=user.id,
                    channel=channel,
                    kind=kind,
                    event_key=event_key,
                    dedupe_key=dedupe_key_for(event_key, user.id, channel),
                    message_id=message_id,
                    status=DeliveryStatus.SKIPPED if opted_out else DeliveryStatus.PENDING,
                    attempts=0,
                    last_error=OPTED_OUT if opted_out else None,
                    next_attempt_at=now if opted_out else now + SWEEP_GRACE,
                    created_at=now,
                )
            )
    db.add_all(rows)
    await db.flush()
    pending = tuple(r.id for r in rows if r.status == DeliveryStatus.PENDING)
    if pending:
        after_commit.record(db, after_commit.DispatchDeliveries(delivery_ids=pending))
    return rows
