"""Webhook endpoints: create, change, rotate the secret, replay, test; their delivery log."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.accounts.models import User
from lifeline.db import new_id, utcnow
from lifeline.errors import Conflict, NotFound
from lifeline.integrations import ssrf
from lifeline.integrations.models import DeliveryAttempt, WebhookEndpoint
from lifeline.integrations.schemas import TEST_EVENT
from lifeline.notifications.models import Channel, Delivery, DeliveryKind, DeliveryStatus
from lifeline.pagination import keyset, page

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 24
# After a rotation the old secret keeps signing beside the new one for this long.
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def message_id_for(delivery_id: str) -> str:
    """The ``webhook-id``: one per delivery, the same on every retry and replay of it."""
    return f"msg_{delivery_id}"


def webhook_delivery(
    *,
    endpoint_id: str,
    account_id: str,
    event_key: str,
    payload: dict[str, Any],
    handoff_id: str | None,
    due: datetime,
) -> Delivery:
    delivery_id = new_id()
    return Delivery(
        id=delivery_id,
        handoff_id=handoff_id,
        account_id=account_id,
        recipient_user_id=None,
        endpoint_id=endpoint_id,
        channel=Channel.WEBHOOK,
        kind=DeliveryKind.EVENT,
        event_key=event_key,
        dedupe_key=f"{event_key}:{endpoint_id}:{Channel.WEBHOOK}",
        message_id=message_id_for(delivery_id),
        payload=payload,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=due,
        created_at=utcnow(),
    )


async def create_endpoint(
    *,
    db: AsyncSession,
    actor: User,
    url: str,
    event_types: list[str],
    description: str,
    enabled: bool,
    allow_private: bool,
) -> WebhookEndpoint:
    """A new endpoint of the actor's account; its URL is vetted (SSRF) before anything is saved."""
    await ssrf.check_url(url, allow_private=allow_private)
    now = utcnow()
    endpoint = WebhookEndpoint(
        account_id=actor.account_id,
        url=url,
        event_types=list(event_types),
        description=description,
        enabled=enabled,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    db.add(endpoint)
    await db.flush()
    return endpoint


async def get_endpoint(*, db: AsyncSession, actor: User, endpoint_id: str) -> WebhookEndpoint:
    endpoint = await db.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.account_id == actor.account_id,
            WebhookEndpoint.deleted_at.is_(None),
        )
    )
    if endpoint is None:
        raise NotFound("Webhook not found")
    return endpoint


async def list_endpoints(
    *, db: AsyncSession, actor: User, cursor: str | None, limit: int
) -> tuple[list[WebhookEndpoint], str | None]:
    query = keyset(
        select(WebhookEndpoint).where(
            WebhookEndpoint.account_id == actor.account_id, WebhookEndpoint.deleted_at.is_(None)
        ),
        WebhookEndpoint.created_at,
        WebhookEndpoint.id,
        cursor=cursor,
        limit=limit,
        descending=False,
    )
    rows = list((await db.scalars(query)).all())
    return page(rows, limit, lambda e: (e.created_at, e.id))


async def update_endpoint(
    *,
    db: AsyncSession,
    actor: User,
    endpoint_id: str,
    changes: dict[str, Any],
    allow_private: bool,
) -> WebhookEndpoint:
    """Change the given fields; enabling again clears why Lifeline had switched it off."""
    endpoint = await get_endpoint(db=db, actor=actor, endpoint_id=endpoint_id)
    if changes.get("url") is not None:
        await ssrf.check_url(changes["url"], allow_private=allow_private)
        endpoint.url = changes["url"]
    if changes.get("event_types") is not None:
        endpoint.event_types = list(changes["event_types"])
    if changes.get("description") is not None:
        endpoint.description = changes["description"]
    if changes.get("enabled") is not None:
        endpoint.enabled = changes["enabled"]
        if endpoint.enabled:
            endpoint.disabled_reason = None
            endpoint.failing_since = None
    endpoint.updated_at = utcnow()
    await db.flush()
    return endpoint


async def delete_endpoint(*, db: AsyncSession, actor: User, endpoint_id: str) -> None:
    """Gone from the API; its delivery records stay, and anything still queued is skipped."""
    endpoint = await get_endpoint(db=db, actor=actor, endpoint_id=endpoint_id)
    now = utcnow()
    endpoint.deleted_at = now
    endpoint.enabled = False
    endpoint.updated_at = now
    await db.flush()


async def rotate_secret(*, db: AsyncSession, actor: User, endpoint_id: str) -> WebhookEndpoint:
    """A new secret signs from now on; the old one also signs for the next 24 hours."""
    endpoint = await get_endpoint(db=db, actor=actor, endpoint_id=endpoint_id)
    now = utcnow()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    endpoint.updated_at = now
    await db.flush()
    return endpoint


def signing_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The current secret, and the previous one while its overlap lasts."""
    keys = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        keys.append(endpoint.previous_secret)
    return keys


async def send_test(*, db: AsyncSession, actor: User, endpoint_id: str) -> Delivery:
    """Queue a ``webhook.test`` event to this endpoint (whether or not it is enabled)."""
    endpoint = await get_endpoint(db=db, actor=actor, endpoint_id=endpoint_id)
    now = utcnow()
    test_id = new_id()
    delivery = webhook_delivery(
        endpoint_id=endpoint.id,
        account_id=endpoint.account_id,
        event_key=f"test:{test_id}",
        payload={
            "type": TEST_EVENT,
            "timestamp": now.isoformat(),
            "data": {"webhook_id": endpoint.id, "sent_by": {"id": actor.id, "name": actor.name}},
        },
        handoff_id=None,
        due=now,
    )
    db.add(delivery)
    await db.flush()
    after_commit.record(db, after_commit.DeliverToIntegrations(delivery_ids=(delivery.id,)))
    return delivery


def _replayable(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict("The webhook is disabled; enable it before replaying")


async def _requeue(db: AsyncSession, where: list[Any]) -> list[str]:
    """Queue these finished deliveries again, now, with a fresh retry schedule."""
    ids = list(
        await db.scalars(
            select(Delivery.id).where(
                *where, Delivery.status != DeliveryStatus.PENDING, Delivery.lease_token.is_(None)
            )
        )
    )
    if not ids:
        return []
    now = utcnow()
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        update(Delivery)
        .where(Delivery.id.in_(ids), Delivery.status != DeliveryStatus.PENDING)
        .values(
            status=DeliveryStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            sent_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    if result.rowcount:
        after_commit.record(db, after_commit.DeliverToIntegrations(delivery_ids=tuple(ids)))
    return ids


async def replay_delivery(
    *, db: AsyncSession, actor: User, endpoint_id: str, delivery_id: str
) -> Delivery:
    """Send one delivery again (same ``webhook-id``, signed anew with the current secret)."""
    endpoint = await get_endpoint(db=db, actor=actor, endpoint_id=endpoint_id)
    delivery = await db.scalar(
        select(Delivery).where(Delivery.id == delivery_id, Delivery.endpoint_id == endpoint.id)
    )
    if delivery is None:
        raise NotFound("Delivery not found")
    _replayable(endpoint)
    if delivery.status == DeliveryStatus.PENDING:
        raise Conflict("This delivery is already queued")
    await _requeue(db, [Delivery.id == delivery.id])
    await db.refresh(delivery)
    return delivery


async def replay_failed_since(
    *, db: AsyncSession, actor: User, endpoint_id: str, since: datetime
) -> int:
    """Send again every delivery of this endpoint created since ``since`` that failed."""
    endpoint = await get_endpoint(db=db, actor=actor, endpoint_id=endpoint_id)
    _replayable(endpoint)
    ids = await _requeue(
        db,
        [
            Delivery.endpoint_id == endpoint.id,
            Delivery.status == DeliveryStatus.FAILED,
            Delivery.created_at >= since,
        ],
    )
    return len(ids)


async def list_deliveries(
    *, db: AsyncSession, actor: User, endpoint_id: str, cursor: str | None, limit: int
) -> tuple[list[tuple[Delivery, list[DeliveryAttempt]]], str | None]:
    """Newest first, each with its attempts (oldest first)."""
    endpoint = await get_endpoint(db=db, actor=actor, endpoint_id=endpoint_id)
    query = keyset(
        select(Delivery).where(
            Delivery.endpoint_id == endpoint.id, Delivery.account_id == actor.account_id
        ),
        Delivery.created_at,
        Delivery.id,
        cursor=cursor,
        limit=limit,
        descending=True,
    )
    rows = list((await db.scalars(query)).all())
    attempts: dict[str, list[DeliveryAttempt]] = {d.id: [] for d in rows}
    if rows:
        for attempt in await db.scalars(
            select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id.in_(list(attempts)))
            .order_by(DeliveryAttempt.at, DeliveryAttempt.id)
        ):
            attempts[attempt.delivery_id].append(attempt)
    items, next_cursor = page(rows, limit, lambda d: (d.created_at, d.id))
    return [(d, attempts[d.id]) for d in items], next_cursor
