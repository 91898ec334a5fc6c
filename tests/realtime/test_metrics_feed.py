"""The series fed by the real-time hub, the relay and the web form, scraped from /metrics."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from lifeline.context import AppContext
from tests.realtime.clients import wait_connections, ws_stream
from tests.support.factories import Factory
from tests.test_metrics import ESCALATIONS, Samples, _samples
from tests.web.conftest import Browser

LIVE = ("lifeline_live_connections", ())
PUSH_COUNT = ("lifeline_push_latency_seconds_count", ())


async def _scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return _samples(response.text)


def _sum(samples: Samples, name: str) -> float:
    return sum(value for (sample, _labels), value in samples.items() if sample == name)


async def test_connections_push_deliveries_and_web_escalations_move_their_series(
    live: str, http: httpx.AsyncClient, factory: Factory, ctx: AppContext, app: FastAPI
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    before = await _scrape(http)
    async with ws_stream(live, team["senior"]) as ws:
        await wait_connections(http, team["senior"], 1)
        opened = await _scrape(http)
        assert opened[LIVE] == before[LIVE] + 1
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            tab = Browser(c)
            assert (await tab.sign_in(team["junior"].email, team["junior"].password)).is_redirect
            made = await tab.post("/sessions", {"title": "From the web form"})
            session_path = made.headers["location"].split("?")[0]
            escalated = await tab.post(
                f"{session_path}/handoff", {"intent": "escalate", "note": "?"}
            )
        assert escalated.status_code == 303, escalated.text
        assert (await ws.next())["type"] == "handoff.escalated"
        await ctx.tasks.drain()
        assert ctx.relay is not None
        await ctx.relay.sweep()
        after = await _scrape(http)
    assert after[ESCALATIONS] == before[ESCALATIONS] + 1
    assert after[PUSH_COUNT] >= before[PUSH_COUNT] + 1
    assert _sum(after, "lifeline_deliveries_total") > _sum(before, "lifeline_deliveries_total")
    assert _sum(after, "lifeline_delivery_attempts_total") > _sum(
        before, "lifeline_delivery_attempts_total"
    )
    await wait_connections(http, team["senior"], 0)
    assert (await _scrape(http))[LIVE] == before[LIVE]
