"""An account's escalation policy, and the schedule row each open or claimed escalation keeps."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from lifeline.db import Base, UTCDateTime, utcnow


class EscalationPolicyRecord(Base):
    """An account's policy as edited; an account without a row has the default policy."""

    __tablename__ = "escalation_policies"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)


class SchedulePhase(enum.StrEnum):
    # Open: the next step (or the expiry) of the escalation's policy.
    POLICY = "policy"
    # Claimed: the "still on it?" reminder to the claimer, or the auto-release.
    CLAIMED = "claimed"


class EscalationSchedule(Base):
    """What happens next to one escalation, and when: at most one row per handoff.

    A sweeper leases due rows (``lease_token``) before acting on them, so two workers never
    fire one step; a claim, cancel or resolve deletes the row in its own transaction.
    """

    __tablename__ = "escalation_schedules"
    __table_args__ = (Index("ix_escalation_schedules_due", "next_step_at"),)

    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    phase: Mapped[str] = mapped_column(String(16))
    next_step_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The next step to fire (0-based) in the policy phase; in the claimed phase, 1 once the
    # claim reminder went out.
    step: Mapped[int] = mapped_column(Integer, default=0)
    loop: Mapped[int] = mapped_column(Integer, default=0)
    # How many times the escalation went back to the queue: part of every step's event key,
    # so a step of a later round is a new event and not a duplicate of the first.
    round: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(36), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
