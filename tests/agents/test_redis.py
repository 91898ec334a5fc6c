"""Two servers behind Redis: an agent waits on one, a senior picks up on the other.

The servers report progress only every ten minutes here, so the wait has no periodic re-read to
fall back on: only the claim's event, carried across processes by Redis, can wake it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from lifeline.db import create_engine, create_sessionmaker
from tests.agents.support import http_agent, ok
from tests.realtime.clients import API
from tests.support.factories import Factory
from tests.support.live import live_server

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.parametrize("backend", ["postgres"])]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def factory(engine: AsyncEngine) -> Factory:
    return Factory(create_sessionmaker(engine))


async def waits_in_progress(http: httpx.AsyncClient) -> float:
    text = (await http.get("/metrics")).text
    for line in text.splitlines():
        if line.startswith("lifeline_agent_waits "):
            return float(line.split()[1])
    return 0.0


async def test_a_wait_on_one_server_wakes_on_a_claim_made_on_the_other(
    database_url: str, redis_url: str, tmp_path: Path, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    env = {"LIFELINE_REDIS_URL": redis_url, "LIFELINE_AGENT_PROGRESS_SECONDS": "600"}
    with (
        live_server(database_url, tmp_path, name="a", **env) as a,
        live_server(database_url, tmp_path, name="b", **env) as b,
    ):
        async with (
            httpx.AsyncClient(base_url=a, timeout=30) as via_a,
            httpx.AsyncClient(base_url=b, timeout=30) as via_b,
            http_agent(a, team["junior"].token) as agent,
        ):
            created = ok(await agent.call_tool("escalate", {"ask": "help"}))
            hid, sid = created["handoff_id"], created["session_id"]
            pickup = asyncio.create_task(
                agent.call_tool("wait_for_pickup", {"handoff_id": hid, "timeout_seconds": 50})
            )
            async with asyncio.timeout(30):
                while await waits_in_progress(via_a) < 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            claim = await via_b.post(
                f"{API}/ai-sessions/{sid}/handoffs/{hid}/claim", headers=team["senior"].headers
            )
            assert claim.status_code == 200, claim.text
            picked = ok(await pickup)
            # Returned with the claim, not at the 50 s timeout (which would say "open").
            assert picked["status"] == "claimed"
            assert picked["claimed_by"]["id"] == team["senior"].id
