"""Request and response bodies for handoffs and the team queue."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lifeline.accounts.schemas import StrictModel, UserRef
from lifeline.handoffs.models import HandoffStatus, Intent

MAX_NOTE_LENGTH = 5_000
MAX_BRIEF_TEXT = 20_000
MAX_ANSWER_LENGTH = 20_000

ShortText = Annotated[str, Field(max_length=500)]


class BriefContext(StrictModel):
    """Where the work is: enough for a senior to open the same code."""

    repo: ShortText | None = None
    branch: ShortText | None = None
    commit: ShortText | None = None
    files: list[ShortText] = Field(default_factory=list, max_length=100)
    url: ShortText | None = None


class Brief(StrictModel):
    """What an escalation needs from a human: ``ask`` always, the rest when known."""

    ask: str = Field(min_length=1, max_length=MAX_NOTE_LENGTH)
    tried: str | None = Field(default=None, max_length=MAX_BRIEF_TEXT)
    error: str | None = Field(default=None, max_length=MAX_BRIEF_TEXT)
    context: BriefContext | None = None


class HandoffCreate(StrictModel):
    intent: Intent
    note: str = Field(default="", max_length=MAX_NOTE_LENGTH)
    brief: Brief | None = None

    @model_validator(mode="after")
    def _note_from_brief(self) -> Self:
        # A brief with no note reads as its ask wherever only the note is shown.
        if self.brief is not None and not self.note:
            self.note = self.brief.ask
        return self


class HandoffResolve(StrictModel):
    answer: str | None = Field(default=None, max_length=MAX_ANSWER_LENGTH)


class HandoffRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str
    intent: Intent
    status: HandoffStatus
    note: str
    brief: Brief | None = None
    answer: str | None = None
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
