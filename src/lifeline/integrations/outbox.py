"""Integration deliveries follow real-time events: one row per webhook endpoint, one for Slack.

Written in the event's own transaction (the transactional outbox, as for email and push) and
handed to the integrations relay after commit. Events private to one user (a park) go nowhere.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import Boolean, bindparam, exists, literal, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.db import new_id, utcnow
from lifeline.integrations.models import SlackIntegration, WebhookEndpoint
from lifeline.integrations.schemas import EVENT_TYPES
from lifeline.integrations.webhooks import webhook_delivery
from lifeline.notifications.models import Channel, Delivery, DeliveryKind, DeliveryStatus
from lifeline.realtime.models import AUDIENCE_ACCOUNT, Event

# Handoff events that post or update the account's Slack message about the escalation.
SLACK_EVENT_TYPES = frozenset(
    {
        "handoff.escalated",
        "handoff.claimed",
        "handoff.released",
        "handoff.resolved",
        "handoff.cancelled",
        "handoff.expired",
    }
)
# As for email: the in-process dispatcher goes first, the sweep only picks up what it missed.
SWEEP_GRACE = timedelta(seconds=5)


_SLACK = "slack"  # never an endpoint id (those are UUIDs)
_INTEGRATIONS_OF_ACCOUNT = union_all(
    select(WebhookEndpoint.id, WebhookEndpoint.event_types).where(
        WebhookEndpoint.account_id == bindparam("account"),
        WebhookEndpoint.enabled.is_(True),
        WebhookEndpoint.deleted_at.is_(None),
    ),
    select(literal(_SLACK), null().cast(WebhookEndpoint.event_types.type)).where(
        bindparam("want_slack", type_=Boolean),
        exists().where(SlackIntegration.account_id == bindparam("account")),
    ),
)


def payload_of(event: Event) -> dict[str, Any]:
    """The Standard Webhooks body: the real-time event's type and data, and when it happened."""
    return {"type": event.type, "timestamp": event.created_at.isoformat(), "data": event.payload}


def _handoff_id(event: Event) -> str | None:
    if event.type.startswith("handoff.") and isinstance(event.payload.get("id"), str):
        handoff_id: str = event.payload["id"]
        return handoff_id
    return None


def slack_delivery(*, event: Event, handoff_id: str, due: Any) -> Delivery:
    event_key = f"event:{event.id}"
    return Delivery(
        id=new_id(),
        handoff_id=handoff_id,
        account_id=event.account_id,
        recipient_user_id=None,
        endpoint_id=None,
        channel=Channel.SLACK,
        kind=DeliveryKind.EVENT,
        event_key=event_key,
        dedupe_key=f"{event_key}:{Channel.SLACK}",
        message_id=event_key,
        payload=payload_of(event),
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=due,
        created_at=utcnow(),
    )


async def enqueue_for_event(*, db: AsyncSession, event: Event) -> list[Delivery]:
    """Outbox rows for the webhooks subscribed to ``event`` and, for handoffs, for Slack."""
    if event.type not in EVENT_TYPES or not _shared_with_team(event.audience):
        return []
    due = utcnow() + SWEEP_GRACE
    handoff_id = _handoff_id(event)
    rows: list[Delivery] = []
    # One round trip: the account's live endpoints, then a row marking a Slack installation.
    found = await db.execute(
        _INTEGRATIONS_OF_ACCOUNT,
        {
            "account": event.account_id,
            "want_slack": handoff_id is not None and event.type in SLACK_EVENT_TYPES,
        },
    )
    payload = payload_of(event)
    for endpoint_id, event_types in found:
        if endpoint_id == _SLACK:
            assert handoff_id is not None
            rows.append(slack_delivery(event=event, handoff_id=handoff_id, due=due))
        elif event.type in event_types:
            rows.append(
                webhook_delivery(
                    endpoint_id=endpoint_id,
                    account_id=event.account_id,
                    event_key=f"event:{event.id}",
                    payload=payload,
                    handoff_id=handoff_id,
                    due=due,
                )
            )
    if rows:
        db.add_all(rows)
        await db.flush()
        after_commit.record(
            db, after_commit.DeliverToIntegrations(delivery_ids=tuple(r.id for r in rows))
        )
    return rows


def _shared_with_team(audience: str) -> bool:
    """Account-wide events, and those of sessions not yet escalated (admins see those too);
    never a park, which is its creator's alone."""
    return audience == AUDIENCE_ACCOUNT or audience.startswith("restricted:")
