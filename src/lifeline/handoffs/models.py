"""Handoffs: a park or an escalation of an AI session, and its state."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from lifeline.db import Base, UTCDateTime, new_id, utcnow


class Intent(enum.StrEnum):
    PARK = "park"
    ESCALATE = "escalate"


class HandoffStatus(enum.StrEnum):
    OPEN = "open"
    CLAIMED = "claimed"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"
    # Nobody picked it up before its policy's expire_after_minutes.
    EXPIRED = "expired"

    @property
    def is_live(self) -> bool:
        """Open or claimed: the escalation still wants a human (a pick-up, then an answer)."""
        return self in (HandoffStatus.OPEN, HandoffStatus.CLAIMED)


ACTIVE_ESCALATION = text("intent = 'escalate' AND status IN ('open', 'claimed')")


class Handoff(Base):
    __tablename__ = "handoffs"
    __table_args__ = (
        # The database, not a check in Python, keeps a session to one live escalation.
        Index(
            "uq_handoffs_one_active_escalation",
            "session_id",
            unique=True,
            sqlite_where=ACTIVE_ESCALATION,
            postgresql_where=ACTIVE_ESCALATION,
        ),
        Index("ix_handoffs_account_status_created", "account_id", "status", "created_at"),
        Index("ix_handoffs_account_created", "account_id", "created_at"),
        Index("ix_handoffs_session_created", "session_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("ai_sessions.id"))
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    intent: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text, default="")
    # What an agent (or the Escalate form) says is needed: {ask, tried, error, context}.
    brief: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The resolver's answer, handed back to a waiting agent.
    answer: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    resolved_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # When the escalation last (re)entered the queue; its policy's minutes count from here.
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The account's escalation policy as it was when this was escalated (null for a park).
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # How many times it went back to the queue, and the last step fired since (1-based, 0 for
    # none): a step's conditional write on these is what makes a racing claim win or lose.
    policy_round: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    policy_step: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The last step that had fired when it was picked up (analytics).
    claimed_step: Mapped[int | None] = mapped_column(Integer, default=None)
