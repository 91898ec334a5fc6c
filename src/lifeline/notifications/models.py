"""Delivery records: the transactional outbox and the audit trail of every notification."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lifeline.db import Base, UTCDateTime, new_id, utcnow


class Channel(enum.StrEnum):
    EMAIL = "email"
    PUSH = "push"
    WEBHOOK = "webhook"
    SLACK = "slack"


class DeliveryKind(enum.StrEnum):
    # Waves of the escalation policy: step 1 at escalation, step 1 again after a release,
    # every later step (and, before policies, the single reminder).
    ESCALATED = "escalated"
    RELEASED = "released"
    # A webhook or Slack delivery: it follows one real-time event, not a wave of the policy.
    EVENT = "event"
    STEP = "step"
    REMINDER = "reminder"
    # To the claimer alone: "still on it?"
    CLAIM_REMINDER = "claim_reminder"
    # To the escalator: nobody picked it up in time.
    EXPIRED = "expired"


# The waves that come after the escalation's own: once a handoff leaves the queue (claimed,
# resolved, cancelled, expired) none of these is sent any more. Pending ones are skipped in
# that transaction, and the relay sends them only while holding their rows against it (see
# ``leases.hold_for_send``). The escalation's first wave is the escalation itself, not a
# further notification: it is delivered (and retried) whatever happens next, with the relay's
# row-by-row outcome writes.
POLICY_KINDS = frozenset(
    {
        DeliveryKind.RELEASED,
        DeliveryKind.STEP,
        DeliveryKind.REMINDER,
        DeliveryKind.CLAIM_REMINDER,
    }
)
GATED_KINDS = POLICY_KINDS


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "next_attempt_at"),
        Index("ix_deliveries_handoff", "handoff_id"),
        # The hourly email cap counts one account's recent email rows (migration 0004).
        Index("ix_deliveries_email_cap", "account_id", "channel", "created_at", "status"),
        # A webhook endpoint's deliveries, newest first (migration 0007).
        Index("ix_deliveries_endpoint", "endpoint_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # Set when the delivery is about a handoff (every user notification; webhook and Slack
    # deliveries of handoff events); a webhook delivery of another event has none.
    handoff_id: Mapped[str | None] = mapped_column(ForeignKey("handoffs.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    # The person told (email, push); webhook and Slack deliveries have none.
    recipient_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    endpoint_id: Mapped[str | None] = mapped_column(
        ForeignKey("webhook_endpoints.id"), default=None
    )
    # What a webhook or Slack delivery sends: the event's type, time and data.
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    # The event this notification is about (one wave of one handoff): recipient, channel and
    # event make the dedupe key, so the same wave never reaches the same person twice.
    event_key: Mapped[str] = mapped_column(String(120))
    dedupe_key: Mapped[str] = mapped_column(String(250), unique=True)
    message_id: Mapped[str] = mapped_column(String(250))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_token: Mapped[str | None] = mapped_column(String(36), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class PendingWave(Base):
    """A wave written as one row in its handoff's transaction, not yet expanded into its
    delivery rows (one per recipient per channel, see ``outbox.expand_waves``).

    The expansion runs right after commit and deletes this row in the transaction that writes
    the deliveries, so a wave is expanded exactly once whoever tries; a wave whose process died
    before expanding it is expanded by the next sweep. Who it goes to is kept as the policy
    step said it: the roles, the people named, the channels, and who is left out.
    """

    __tablename__ = "pending_waves"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    event_key: Mapped[str] = mapped_column(String(120), unique=True)
    roles: Mapped[list[str]] = mapped_column(JSON)
    user_ids: Mapped[list[str]] = mapped_column(JSON)
    excluded_user_ids: Mapped[list[str]] = mapped_column(JSON)
    channels: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
