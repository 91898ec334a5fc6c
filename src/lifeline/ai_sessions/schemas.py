"""Request and response bodies for AI sessions and transcripts."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lifeline.accounts.schemas import StrictModel
from lifeline.ai_sessions.models import MessageRole, SessionSource, SessionStatus

MAX_MESSAGE_LENGTH = 100_000


class MessageCreate(StrictModel):
    role: MessageRole = MessageRole.USER
    content: str = Field(min_length=1, max_length=MAX_MESSAGE_LENGTH)


class SessionCreate(StrictModel):
    title: str = Field(min_length=1, max_length=300)
    messages: list[MessageCreate] = Field(default_factory=list, max_length=500)
    # Scripts and hooks say what they are; "web" and "mcp" are set by those surfaces only.
    source: Literal["api", "cli", "claude-code"] = "api"
    # The caller's own conversation id: creating again with it returns the same session (200).
    external_id: str | None = Field(default=None, min_length=1, max_length=200)


class SessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    title: str
    status: SessionStatus
    created_by: str
    assigned_to: str | None
    created_at: datetime
    updated_at: datetime
    source: SessionSource = SessionSource.API
    client_name: str | None = None
    external_id: str | None = None


class SessionList(BaseModel):
    items: list[SessionRead]
    next_cursor: str | None = None


class MessageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str
    role: MessageRole
    author_user_id: str | None
    content: str
    created_at: datetime


class MessageList(BaseModel):
    items: list[MessageRead]
    next_cursor: str | None = None
