"""The durable event log that live push is served and replayed from."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from lifeline.db import Base, UTCDateTime, utcnow

# BIGSERIAL on PostgreSQL; INTEGER PRIMARY KEY (the rowid, monotonic) on SQLite.
EventId = BigInteger().with_variant(Integer(), "sqlite")

AUDIENCE_ACCOUNT = "account"


def audience_user(user_id: str) -> str:
    return f"user:{user_id}"


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_account_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str] = mapped_column(String(64))
    # "account" (every member), "user:<id>" (that user only, e.g. a park), or
    # "restricted:<id>,<id>" (those users plus the account's admins and owners).
    audience: Mapped[str] = mapped_column(String(400))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
