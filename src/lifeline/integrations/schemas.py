"""Request and response bodies of webhook endpoints, their deliveries, and the Slack app."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from lifeline.accounts.schemas import StrictModel

# The real-time event types an endpoint may subscribe to.
EVENT_TYPES: tuple[str, ...] = (
    "handoff.escalated",
    "handoff.claimed",
    "handoff.released",
    "handoff.resolved",
    "handoff.cancelled",
    "handoff.expired",
    "session.message",
)
TEST_EVENT = "webhook.test"
EventType = Literal[
    "handoff.escalated",
    "handoff.claimed",
    "handoff.released",
    "handoff.resolved",
    "handoff.cancelled",
    "handoff.expired",
    "session.message",
]


def _distinct(values: list[EventType]) -> list[EventType]:
    return list(dict.fromkeys(values))


EventTypes = Annotated[
    list[EventType], Field(min_length=1, max_length=len(EVENT_TYPES)), AfterValidator(_distinct)
]
Url = Annotated[str, Field(min_length=1, max_length=2000)]
Description = Annotated[str, Field(max_length=500)]


class WebhookCreate(StrictModel):
    url: Url
    event_types: EventTypes
    description: Description = ""
    enabled: bool = True


class WebhookUpdate(StrictModel):
    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    event_types: list[str]
    description: str
    enabled: bool
    # Set when Lifeline switched the endpoint off (410 Gone, or days of nothing but failures).
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookRead):
    """Creation and rotation only: the signing secret, shown this once."""

    secret: str


class WebhookList(BaseModel):
    items: list[WebhookRead]
    next_cursor: str | None = None


class AttemptRead(BaseModel):
    at: datetime
    status_code: int | None
    duration_ms: int
    response_excerpt: str


class WebhookDeliveryRead(BaseModel):
    id: str
    event_type: str
    status: str
    created_at: datetime
    # While a retry is scheduled (status pending).
    next_attempt_at: datetime | None
    last_error: str | None
    attempts: list[AttemptRead]


class WebhookDeliveryList(BaseModel):
    items: list[WebhookDeliveryRead]
    next_cursor: str | None = None


class ReplaySince(StrictModel):
    since: datetime


class ReplayResult(BaseModel):
    replayed: int


class SlackConfig(StrictModel):
    bot_token: Annotated[str, Field(min_length=1, max_length=300)]
    signing_secret: Annotated[str, Field(min_length=1, max_length=200)]
    channel: Annotated[str, Field(min_length=1, max_length=100)]


class SlackRead(BaseModel):
    """The account's Slack app, without its secrets (``connected`` false when there is none)."""

    connected: bool
    team_id: str | None = None
    team_name: str | None = None
    channel: str | None = None
    updated_at: datetime | None = None
