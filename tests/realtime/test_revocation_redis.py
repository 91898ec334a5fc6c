"""With Redis, ``lifeline user set-password`` reaches the servers' streams at once."""

from __future__ import annotations

import httpx
import pytest

from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.realtime.hub import CLOSE_REVOKED
from tests.conftest import make_settings
from tests.realtime.clients import wait_connections, ws_stream
from tests.realtime.test_revocation import NEW_PASSWORD, cookie
from tests.realtime.test_router import sign_in
from tests.support.databases import require_env
from tests.support.factories import Factory
from tests.test_cli import run

pytestmark = [pytest.mark.redis]


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Heartbeats far apart: the close can only come through Redis.
    return make_settings(
        database_url,
        redis_url=require_env("LIFELINE_TEST_REDIS_URL", "Redis"),
        heartbeat_seconds=600,
    )


async def test_set_password_from_the_cli_reaches_the_servers_through_redis(
    live: str,
    http: httpx.AsyncClient,
    factory: Factory,
    ctx: AppContext,
    database_url: str,
    settings: Settings,
) -> None:
    team = await factory.team(senior="engineer")
    _id, secret = await sign_in(ctx, team["senior"])
    async with ws_stream(live, headers=cookie(secret), origin=ctx.settings.base_url) as ws:
        await wait_connections(http, team["senior"], 1)
        changed = await run(
            *("user", "set-password", "--email", team["senior"].email),
            *("--password", NEW_PASSWORD),
            database_url=database_url,
            LIFELINE_REDIS_URL=settings.redis_url or "",
        )
        assert changed.returncode == 0, changed.stderr
        await ws.wait_ended()
        assert ws.close_code == CLOSE_REVOKED.code
