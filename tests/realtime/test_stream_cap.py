"""A user holds at most ``max_streams_per_user`` live streams, SSE and WebSocket together."""

from __future__ import annotations

import httpx
import pytest

from lifeline.config import Settings
from lifeline.realtime.router import CLOSE_TOO_MANY
from tests.conftest import make_settings
from tests.realtime.clients import API, sse_stream, wait_connections, ws_stream
from tests.support.factories import Factory

CAP = 3


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, max_streams_per_user=CAP)


async def test_the_stream_over_the_cap_is_refused_429_or_closed_1008(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(vic="viewer", other="viewer")
    async with (
        ws_stream(live, team["vic"]),
        ws_stream(live, team["vic"]),
        sse_stream(http, team["vic"]) as third,
    ):
        await wait_connections(http, team["vic"], CAP)
        async with ws_stream(live, team["vic"]) as refused_ws:
            await refused_ws.wait_ended()
        assert refused_ws.close_code == CLOSE_TOO_MANY
        refused_sse = await http.get(f"{API}/events", headers=team["vic"].headers)
        assert refused_sse.status_code == 429
        assert "at most 3" in refused_sse.json()["detail"]
        # Per user: someone else still connects.
        async with ws_stream(live, team["other"]) as theirs:
            await wait_connections(http, team["other"], 1)
            assert not theirs.ended.is_set()
        assert not third.ended.is_set()
    # Once one closes, there is room again.
    await wait_connections(http, team["vic"], 0)
    async with ws_stream(live, team["vic"]) as again:
        await wait_connections(http, team["vic"], 1)
        assert not again.ended.is_set()
