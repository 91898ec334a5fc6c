"""Response bodies for delivery records."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from lifeline.notifications.models import Channel, DeliveryKind, DeliveryStatus


class RecipientRef(BaseModel):
    id: str
    name: str
    email: str


class DeliveryRead(BaseModel):
    id: str
    handoff_id: str
    # The person told by email or push; none for a webhook or Slack delivery.
    recipient: RecipientRef | None
    # The webhook endpoint of a webhook delivery.
    endpoint_id: str | None = None
    channel: Channel
    kind: DeliveryKind
    status: DeliveryStatus
    attempts: int
    last_error: str | None
    # Only while a retry is scheduled (status pending).
    next_attempt_at: datetime | None
    sent_at: datetime | None
    created_at: datetime


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None = None
