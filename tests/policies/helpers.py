"""Driving the scheduler through simulated time, and reading what it wrote."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx

from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.notifications.plugin import SweepReport, sweep_once
from tests.notifications.conftest import deliveries, relay_of
from tests.support.factories import Person

URL = "/api/v1/escalation-policy"
BOTH = ["push", "email"]


def step(
    after: int,
    *,
    roles: list[str] | None = None,
    users: list[str] | None = None,
    channels: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "after_minutes": after,
        "notify": {"roles": roles or [], "users": users or []},
        "channels": channels or BOTH,
    }


async def put_policy(client: httpx.AsyncClient, owner: Person, **policy: Any) -> dict[str, Any]:
    response = await client.put(URL, headers=owner.headers, json=policy)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sweep(ctx: AppContext, at: datetime) -> SweepReport:
    """One sweep with the scheduler's clock at ``at``; its waves sent before returning."""
    report = await sweep_once(ctx=ctx, relay=relay_of(ctx), now=at)
    await ctx.tasks.drain()
    return report


def minutes(start: datetime, n: float) -> datetime:
    return start + timedelta(minutes=n)


async def waves(ctx: AppContext, handoff_id: str) -> dict[str, set[tuple[str, str]]]:
    """Event key → {(recipient, channel)} of every wave of the handoff."""
    found: dict[str, set[tuple[str, str]]] = {}
    for row in await deliveries(ctx, handoff_id):
        found.setdefault(row.event_key.split(":", 1)[1], set()).add(
            (row.recipient_user_id, row.channel)
        )
    return found


def now() -> datetime:
    return utcnow()
