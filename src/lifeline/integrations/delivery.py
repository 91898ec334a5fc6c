"""What an integration send is given and what it reports back; the retry schedule.

Webhook and Slack rows are leased like email rows, but with a schedule of their own (the
Standard Webhooks one, over about a day and a half), every HTTP attempt logged, and a
``Retry-After`` from the receiver honoured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from lifeline.notifications.models import DeliveryStatus

# Delays after the first, second, … failed attempt; the eighth failure is final.
RETRY_SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.1
# A Retry-After is obeyed within these bounds.
MIN_RETRY_AFTER = timedelta(seconds=1)
MAX_RETRY_AFTER = timedelta(hours=24)
EXCERPT_BYTES = 1024


def retry_delay(attempts: int, retry_after: timedelta | None = None) -> timedelta:
    """When to try again after ``attempts`` failed ones: the receiver's word, else the schedule."""
    if retry_after is not None:
        return min(max(retry_after, MIN_RETRY_AFTER), MAX_RETRY_AFTER)
    step = RETRY_SCHEDULE[min(max(attempts, 1), len(RETRY_SCHEDULE)) - 1]
    return step * (1 + random.uniform(-JITTER, JITTER))


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return timedelta(seconds=int(value))
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(moment - now, timedelta(0))


def excerpt(data: bytes) -> str:
    return data[:EXCERPT_BYTES].decode("utf-8", "replace")


@dataclass(frozen=True)
class ClaimedSend:
    """A leased webhook or Slack row: what the sender needs, by value."""

    id: str
    lease_token: str
    channel: str
    account_id: str
    endpoint_id: str | None
    handoff_id: str | None
    message_id: str
    attempts: int
    payload: dict[str, Any]

    @property
    def event_type(self) -> str:
        return str(self.payload.get("type", ""))


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status_code: int | None
    duration_ms: int
    response_excerpt: str


@dataclass
class SendResult:
    """The outcome of one send; the relay turns a failure into a retry or a dead letter."""

    status: DeliveryStatus
    error: str | None = None
    attempt: Attempt | None = None
    # Failed but worth retrying (5xx, timeout, connection refused, 429).
    retryable: bool = False
    retry_after: timedelta | None = None
    # The receiver said it is gone (410): switch the endpoint off.
    disable_endpoint: str | None = None
    # Extra writes the sender needs in the outcome's transaction (the Slack message's ts).
    records: list[Any] = field(default_factory=list)

    @classmethod
    def sent(cls, attempt: Attempt | None = None) -> SendResult:
        return cls(DeliveryStatus.SENT, attempt=attempt)

    @classmethod
    def skipped(cls, reason: str) -> SendResult:
        return cls(DeliveryStatus.SKIPPED, reason)
