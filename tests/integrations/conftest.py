"""Integration fixtures: a verifying webhook receiver on loopback, settings that may reach it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from lifeline.app import create_app
from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.integrations.models import DeliveryAttempt
from lifeline.integrations.relay import IntegrationRelay
from lifeline.notifications.models import Delivery, DeliveryStatus
from tests.conftest import make_settings
from tests.support.factories import Person
from tests.support.smtp import SmtpRecorder, smtp_recorder
from tests.support.webhooks import Receiver, webhook_receiver

ALL_EVENTS = [
    "handoff.escalated",
    "handoff.claimed",
    "handoff.released",
    "handoff.resolved",
    "handoff.cancelled",
    "handoff.expired",
    "session.message",
]


def integration_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "webhook_allow_private": True,
        "webhook_timeout_seconds": 1.0,
        "sweep_interval_seconds": 3600.0,
    }
    values.update(overrides)
    return make_settings(database_url, **values)


@pytest.fixture
def smtp() -> Iterator[SmtpRecorder]:
    with smtp_recorder() as server:
        yield server


@pytest.fixture
def settings(database_url: str, smtp: SmtpRecorder) -> Settings:
    return integration_settings(database_url, smtp_host=smtp.host, smtp_port=smtp.port)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as server:
        yield server


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[AppContext, httpx.AsyncClient]]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield application.state.ctx, c


def relay_of(ctx: AppContext) -> IntegrationRelay:
    assert ctx.integrations is not None
    relay: IntegrationRelay = ctx.integrations
    return relay


async def create_webhook(
    client: httpx.AsyncClient,
    admin: Person,
    url: str,
    event_types: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/webhooks",
        headers=admin.headers,
        json={"url": url, "event_types": event_types or ALL_EVENTS, **extra},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def webhook_rows(ctx: AppContext, endpoint_id: str | None = None) -> list[Delivery]:
    async with ctx.sessionmaker() as db, db.begin():
        query = select(Delivery).where(Delivery.channel.in_(["webhook", "slack"]))
        if endpoint_id is not None:
            query = query.where(Delivery.endpoint_id == endpoint_id)
        return list(await db.scalars(query.order_by(Delivery.created_at, Delivery.id)))


async def attempts_of(ctx: AppContext, delivery_id: str) -> list[DeliveryAttempt]:
    async with ctx.sessionmaker() as db, db.begin():
        return list(
            await db.scalars(
                select(DeliveryAttempt)
                .where(DeliveryAttempt.delivery_id == delivery_id)
                .order_by(DeliveryAttempt.at)
            )
        )


async def make_due(ctx: AppContext) -> None:
    """Travel past every scheduled retry: pending rows are due now."""
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.PENDING)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


async def settle(ctx: AppContext, *, within: float = 30.0, travel: bool = True) -> list[Delivery]:
    """Run the after-commit sends, then (travelling past each retry) sweep until none is pending."""
    deadline = time.monotonic() + within
    while True:
        await ctx.tasks.drain()
        rows = await webhook_rows(ctx)
        if all(r.status != DeliveryStatus.PENDING for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"still pending: {[(r.channel, r.last_error) for r in rows]}")
        if travel:
            await make_due(ctx)
        await relay_of(ctx).sweep()
        await asyncio.sleep(0.02)
