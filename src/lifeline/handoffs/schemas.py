"""Request and response bodies for handoffs and the team queue."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from lifeline.accounts.schemas import StrictModel, UserRef
from lifeline.handoffs.models import HandoffStatus, Intent

MAX_NOTE_LENGTH = 5_000


class HandoffCreate(StrictModel):
    intent: Intent
    note: str = Field(default="", max_length=MAX_NOTE_LENGTH)


class HandoffRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str
    intent: Intent
    status: HandoffStatus
    note: str
    created_by: str
    created_at: datetime
    claimed_by: str | None
    claimed_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None


class HandoffList(BaseModel):
    items: list[HandoffRead]
    next_cursor: str | None = None


class SessionRef(BaseModel):
    id: str
    title: str


class QueueItem(HandoffRead):
    session: SessionRef
    escalator: UserRef
    age_seconds: int


class QueueList(BaseModel):
    items: list[QueueItem]
    next_cursor: str | None = None
