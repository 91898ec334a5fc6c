"""Webhook endpoints, the attempt log of integration deliveries, and Slack's per-account app."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from lifeline.db import Base, UTCDateTime, new_id, utcnow


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why the endpoint was switched off by Lifeline (410 Gone, days of failures), if it was.
    disabled_reason: Mapped[str | None] = mapped_column(String(300), default=None)
    secret: Mapped[str] = mapped_column(String(100))
    # After a rotation the old secret keeps signing (a second signature) until this time.
    previous_secret: Mapped[str | None] = mapped_column(String(100), default=None)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Start of the current unbroken run of failed attempts; cleared by any success.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class DeliveryAttempt(Base):
    """One HTTP attempt of a webhook or Slack delivery: when, what came back, how long it took."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (Index("ix_delivery_attempts_delivery", "delivery_id", "at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("deliveries.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    # The first KiB of the response body, or what went wrong when there was no response.
    response_excerpt: Mapped[str] = mapped_column(Text, default="")


class SlackIntegration(Base):
    __tablename__ = "slack_integrations"

    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(32), unique=True)
    team_name: Mapped[str] = mapped_column(String(200), default="")
    bot_token: Mapped[str] = mapped_column(String(300))
    signing_secret: Mapped[str] = mapped_column(String(200))
    channel: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SlackMessage(Base):
    """The Slack message posted about an escalation, kept up to date as the handoff moves."""

    __tablename__ = "slack_messages"

    handoff_id: Mapped[str] = mapped_column(ForeignKey("handoffs.id"), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    channel_id: Mapped[str] = mapped_column(String(100))
    ts: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SlackInteraction(Base):
    """A button click already acted on: Slack's retries and replays of it change nothing."""

    __tablename__ = "slack_interactions"

    key: Mapped[str] = mapped_column(String(250), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
