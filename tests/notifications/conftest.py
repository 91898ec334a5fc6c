"""Notification fixtures: a recording SMTP server on loopback and settings pointing at it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.app import create_app
from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.db import unit_of_work, utcnow
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, Intent
from lifeline.notifications import outbox
from lifeline.notifications.models import Delivery, DeliveryStatus
from lifeline.notifications.relay import Relay
from tests.conftest import make_settings
from tests.support.factories import Person
from tests.support.smtp import SmtpRecorder, smtp_recorder


def notification_settings(database_url: str, **overrides: object) -> Settings:
    """Short timeouts and backoff so retries happen within a test; no periodic sweeps."""
    values: dict[str, object] = {
        "smtp_timeout_seconds": 5.0,
        "delivery_backoff_base_seconds": 0.05,
        "delivery_backoff_max_seconds": 0.2,
        "delivery_lease_seconds": 60.0,
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
    return notification_settings(database_url, smtp_host=smtp.host, smtp_port=smtp.port)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[AppContext, httpx.AsyncClient]]:
    """A second app with its own settings (another SMTP target), lifespan running."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield application.state.ctx, c


def relay_of(ctx: AppContext) -> Relay:
    assert ctx.relay is not None
    relay: Relay = ctx.relay
    return relay


async def deliveries(ctx: AppContext, handoff_id: str | None = None) -> list[Delivery]:
    async with ctx.sessionmaker() as db, db.begin():
        query = select(Delivery).order_by(Delivery.created_at, Delivery.recipient_user_id)
        if handoff_id is not None:
            query = query.where(Delivery.handoff_id == handoff_id)
        return list(await db.scalars(query))


async def escalate_without_dispatch(ctx: AppContext, person: Person, session_id: str) -> Handoff:
    """Escalate as if the server died right after writing the wave's rows: the wave expanded
    into its delivery rows, none of them dispatched."""
    runner = AfterCommitRunner(TaskSet())
    async with unit_of_work(ctx.sessionmaker, runner) as db:
        actor = await db.get(type(person.user), person.id)
        assert actor is not None
        handoff = await handoffs.create_handoff(
            db=db,
            actor=actor,
            session_id=session_id,
            intent=Intent.ESCALATE,
            note="help",
            email_cap=ctx.settings.email_cap_per_hour,
        )
    async with unit_of_work(ctx.sessionmaker, runner) as db:
        assert (
            await outbox.expand_waves(
                db=db, wave_ids=None, email_cap=ctx.settings.email_cap_per_hour
            )
            == 1
        )
    return handoff


async def make_due(ctx: AppContext) -> None:
    """Let the sweep's grace period pass for every pending row."""
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.PENDING)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )


async def settle(ctx: AppContext, handoff_id: str, *, within: float = 30.0) -> list[Delivery]:
    """Sweep (bounded) until no row of this handoff is pending; returns the rows."""
    deadline = time.monotonic() + within
    while True:
        await ctx.tasks.drain()
        rows = await deliveries(ctx, handoff_id)
        if all(r.status != DeliveryStatus.PENDING for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"still pending: {[(r.channel, r.last_error) for r in rows]}")
        await relay_of(ctx).sweep()
        await asyncio.sleep(0.05)
