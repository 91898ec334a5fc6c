"""AI sessions and their transcripts."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lifeline.db import Base, UTCDateTime, new_id, utcnow


class SessionStatus(enum.StrEnum):
    ACTIVE = "active"
    PARKED = "parked"
    ESCALATED = "escalated"
    CLAIMED = "claimed"
    RESOLVED = "resolved"


class MessageRole(enum.StrEnum):
    USER = "user"
    ASSISTANT = "assistant"
    SYSTEM = "system"
    NOTE = "note"
    TOOL = "tool"


class SessionSource(enum.StrEnum):
    """Where a session was started; ``mcp`` is any MCP client (its name is ``client_name``)."""

    WEB = "web"
    API = "api"
    MCP = "mcp"
    CLAUDE_CODE = "claude-code"
    CLI = "cli"


class AISession(Base):
    __tablename__ = "ai_sessions"
    __table_args__ = (
        Index("ix_ai_sessions_account_created", "account_id", "created_at", "id"),
        # An agent's own conversation id lands on one session per account and source.
        Index(
            "uq_ai_sessions_account_source_external",
            "account_id",
            "source",
            "external_id",
            unique=True,
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    assigned_to: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    title: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.ACTIVE)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    source: Mapped[str] = mapped_column(String(32), default=SessionSource.API, server_default="api")
    client_name: Mapped[str | None] = mapped_column(String(200), default=None)
    external_id: Mapped[str | None] = mapped_column(String(200), default=None)
    # A park is private: while parked, everyone but who parked it sees the status before.
    parked_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    status_before_park: Mapped[str | None] = mapped_column(String(16), default=None)
    # Set by the first escalation and kept: from then on every member may see the session.
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_session_created", "session_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("ai_sessions.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    author_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    content: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
