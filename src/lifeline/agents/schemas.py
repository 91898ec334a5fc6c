"""What the agents' tools take and return (the shapes are fixed: clients rely on them)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from lifeline.accounts.schemas import StrictModel, UserRef
from lifeline.ai_sessions.schemas import MAX_MESSAGE_LENGTH
from lifeline.handoffs.schemas import Brief

HandoffStatusName = Literal["open", "claimed", "resolved", "cancelled", "expired"]
MAX_TRANSCRIPT = 500


class TranscriptEntry(StrictModel):
    role: Literal["user", "assistant", "tool"]
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_LENGTH)


class EscalateResult(BaseModel):
    handoff_id: str
    session_id: str
    status: HandoffStatusName
    url: str
    created: bool


class PickupResult(BaseModel):
    handoff_id: str
    status: HandoffStatusName
    claimed_by: UserRef | None
    answer: str | None
    waited_seconds: float


class AgentMessage(BaseModel):
    id: str
    session_id: str
    author: UserRef | None
    role: str
    content: str
    created_at: datetime


class ReplyResult(BaseModel):
    messages: list[AgentMessage]
    # The session's latest escalation; null when it was never escalated.
    status: HandoffStatusName | None
    answer: str | None


class HandoffView(BaseModel):
    handoff_id: str
    session_id: str
    status: HandoffStatusName
    claimed_by: UserRef | None
    answer: str | None
    brief: Brief | None
    url: str
