"""GET /metrics: handoff and claim counters, and the outbox backlog read from the database."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from lifeline import metrics
from lifeline.app import create_app
from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.notifications.models import Delivery, DeliveryStatus
from tests.conftest import make_settings
from tests.support.factories import Factory, escalate, new_session

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _scrape(
    client: httpx.AsyncClient,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


ESCALATIONS = ("lifeline_handoffs_created_total", (("intent", "escalate"),))
PARKS = ("lifeline_handoffs_created_total", (("intent", "park"),))
CLAIMS = ("lifeline_claims_total", ())
CONFLICTS = ("lifeline_claim_conflicts_total", ())
TTC_COUNT = ("lifeline_time_to_claim_seconds_count", ())


async def test_handoffs_claims_and_conflicts_are_counted(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", a="engineer", b="admin", c="engineer")
    before = await _scrape(client)
    parked = await new_session(client, team["junior"])
    await escalate(client, team["junior"], parked["id"], intent="park")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])

    url = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim"
    responses = await asyncio.gather(
        *[client.post(url, headers=team[k].headers) for k in ("a", "b", "c")]
    )
    assert sorted(r.status_code for r in responses) == [200, 409, 409]

    after = await _scrape(client)
    assert after[ESCALATIONS] - before[ESCALATIONS] == 1
    assert after[PARKS] - before[PARKS] == 1
    assert after[CLAIMS] - before[CLAIMS] == 1
    assert after[CONFLICTS] - before[CONFLICTS] == 2
    assert after[TTC_COUNT] - before[TTC_COUNT] == 1


async def test_outbox_backlog_and_oldest_age_come_from_the_database(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    # The escalation's wave is expanded after commit: let that finish before clearing.
    await ctx.tasks.drain()
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(Delivery.__table__.delete())
    empty = await _scrape(client)
    assert empty[("lifeline_outbox_backlog", (("channel", "email"),))] == 0
    assert empty[("lifeline_outbox_oldest_age_seconds", ())] == 0

    now = utcnow()
    rows = [
        ("email", DeliveryStatus.PENDING, now - timedelta(minutes=10)),
        ("email", DeliveryStatus.PENDING, now - timedelta(minutes=1)),
        ("push", DeliveryStatus.PENDING, now),
        ("email", DeliveryStatus.SENT, now - timedelta(hours=2)),
    ]
    async with ctx.sessionmaker() as db, db.begin():
        for n, (channel, status, created_at) in enumerate(rows):
            db.add(
                Delivery(
                    handoff_id=handoff["id"],
                    account_id=team.account.id,
                    recipient_user_id=team["senior"].id,
                    channel=channel,
                    kind="escalated",
                    event_key=f"bench:{n}",
                    dedupe_key=f"metrics-test:{n}",
                    message_id=f"<{n}@test>",
                    status=status,
                    created_at=created_at,
                    next_attempt_at=created_at,
                )
            )
    scraped = await _scrape(client)
    assert scraped[("lifeline_outbox_backlog", (("channel", "email"),))] == 2
    assert scraped[("lifeline_outbox_backlog", (("channel", "push"),))] == 1
    # The sent row two hours old does not count; the pending one ten minutes old does.
    assert 600 <= scraped[("lifeline_outbox_oldest_age_seconds", ())] < 3600


def test_the_functions_other_layers_call_move_their_series() -> None:
    def value(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before = (
        value("lifeline_deliveries_total", channel="email", status="sent"),
        value("lifeline_delivery_attempts_total", channel="push"),
        value("lifeline_push_latency_seconds_count"),
        value("lifeline_live_connections"),
    )
    metrics.delivery_finished("email", "sent")
    metrics.delivery_attempted("push")
    metrics.push_sent(0.012)
    metrics.connections.inc()
    metrics.connection_opened()
    metrics.connection_closed()
    after = (
        value("lifeline_deliveries_total", channel="email", status="sent"),
        value("lifeline_delivery_attempts_total", channel="push"),
        value("lifeline_push_latency_seconds_count"),
        value("lifeline_live_connections"),
    )
    metrics.connections.dec()
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 1]


@pytest.fixture
async def guarded_client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    application: FastAPI = create_app(
        make_settings(database_url, metrics_token="scrape-secret"), plugins=[]
    )
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def test_a_metrics_token_guards_the_scrape(guarded_client: httpx.AsyncClient) -> None:
    assert (await guarded_client.get("/metrics")).status_code == 401
    wrong = await guarded_client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = await guarded_client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert ok.status_code == 200 and "lifeline_claims_total" in ok.text
    assert "/metrics" not in (await guarded_client.get("/openapi.json")).json()["paths"]


COUNT_IN_A_PROCESS = """
from lifeline import metrics
metrics.handoff_created("escalate")
metrics.connection_opened()
"""
RENDER_IN_A_PROCESS = """
import sys
from lifeline import metrics
sys.stdout.write(metrics.render().decode())
"""


def test_multiprocess_mode_sums_every_process_of_the_host(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(3):
        subprocess.run([sys.executable, "-c", COUNT_IN_A_PROCESS], env=env, check=True, timeout=60)
    rendered = subprocess.run(
        [sys.executable, "-c", RENDER_IN_A_PROCESS],
        env=env,
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    samples = _samples(rendered)
    assert samples[ESCALATIONS] == 3
    # Live gauges count live processes only: the three counting processes have exited.
    assert samples.get(("lifeline_live_connections", ()), 0) == 0
    assert ("lifeline_outbox_backlog", (("channel", "email"),)) in samples
