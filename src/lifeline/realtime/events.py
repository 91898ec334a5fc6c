"""Writing to the event log: in the caller's transaction, published only after it commits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.db import utcnow
from lifeline.integrations.outbox import enqueue_for_event
from lifeline.realtime.models import AUDIENCE_ACCOUNT, Event, audience_user

RESTRICTED_PREFIX = "restricted:"


def restricted_audience(user_ids: Iterable[str | None]) -> str:
    """These users plus the account's admins and owners (a session not yet escalated)."""
    return RESTRICTED_PREFIX + ",".join(sorted({u for u in user_ids if u}))


def event_message(event: Event) -> dict[str, Any]:
    """The wire form every client receives: over WebSocket as is, over SSE as the data line."""
    return {
        "id": str(event.id),
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "data": event.payload,
    }


async def record_event(
    *, db: AsyncSession, account_id: str, type: str, audience: str, data: dict[str, Any]
) -> Event:
    """Append to the durable log and arrange for live push once the transaction commits.

    Webhooks and Slack follow events: their outbox rows are written here, in the same
    transaction.
    """
    event = Event(
        account_id=account_id, type=type, audience=audience, payload=data, created_at=utcnow()
    )
    db.add(event)
    await db.flush()
    after_commit.record(
        db,
        after_commit.PublishEvent(
            account_id=account_id,
            audience=audience,
            message=event_message(event),
        ),
    )
    await enqueue_for_event(db=db, event=event)
    return event


__all__ = [
    "AUDIENCE_ACCOUNT",
    "RESTRICTED_PREFIX",
    "audience_user",
    "event_message",
    "record_event",
    "restricted_audience",
]
