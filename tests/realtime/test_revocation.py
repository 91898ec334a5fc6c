"""A changed password closes the other browsers' live streams, in this process and from the CLI.

``lifeline user set-password`` runs in a process that holds no connection: without Redis the
servers notice on their own, re-checking every stream's credentials on the heartbeat.
"""

from __future__ import annotations

import httpx
import pytest

from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.deps import CSRF_HEADER, SESSION_COOKIE
from lifeline.realtime.hub import CLOSE_REVOKED
from tests.conftest import make_settings
from tests.realtime.clients import sse_stream, wait_connections, ws_stream
from tests.realtime.test_router import sign_in
from tests.support.factories import Factory
from tests.test_cli import run

API = "/api/v1"
NEW_PASSWORD = "a brand new passphrase"


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Frequent heartbeats: the credential re-check they carry is what the CLI case relies on.
    return make_settings(database_url, heartbeat_seconds=0.2)


def cookie(secret: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={secret}"}


async def test_set_password_from_the_cli_closes_the_users_streams_without_a_broker(
    live: str, http: httpx.AsyncClient, factory: Factory, ctx: AppContext, database_url: str
) -> None:
    team = await factory.team(senior="engineer")
    _id, secret = await sign_in(ctx, team["senior"])
    async with (
        ws_stream(live, headers=cookie(secret), origin=ctx.settings.base_url) as ws,
        sse_stream(http, headers={**cookie(secret), "Sec-Fetch-Site": "same-origin"}) as sse,
        ws_stream(live, team["senior"]) as by_token,
    ):
        await wait_connections(http, team["senior"], 3)
        changed = await run(
            *("user", "set-password", "--email", team["senior"].email),
            *("--password", NEW_PASSWORD),
            database_url=database_url,
        )
        assert changed.returncode == 0, changed.stderr
        await ws.wait_ended()
        await sse.wait_ended()
        assert ws.close_code == CLOSE_REVOKED.code
        # The API token is not a web session: its stream stays.
        await wait_connections(http, team["senior"], 1)
        assert not by_token.ended.is_set()
    assert (await http.get(f"{API}/me", headers=cookie(secret))).status_code == 401


async def test_changing_ones_password_signs_out_the_other_browsers_and_their_streams(
    live: str, http: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(senior="engineer")
    _here, here = await sign_in(ctx, team["senior"])
    _there, there = await sign_in(ctx, team["senior"])
    async with (
        ws_stream(live, headers=cookie(there), origin=ctx.settings.base_url) as other,
        ws_stream(live, headers=cookie(here), origin=ctx.settings.base_url) as mine,
    ):
        await wait_connections(http, team["senior"], 2)
        changed = await http.patch(
            f"{API}/me",
            headers={**cookie(here), CSRF_HEADER: "csrf"},
            json={"password": NEW_PASSWORD, "current_password": team["senior"].password},
        )
        assert changed.status_code == 200, changed.text
        await other.wait_ended()
        assert other.close_code == CLOSE_REVOKED.code
        await wait_connections(http, team["senior"], 1)
        assert not mine.ended.is_set()
    assert (await http.get(f"{API}/me", headers=cookie(there))).status_code == 401
    assert (await http.get(f"{API}/me", headers=cookie(here))).status_code == 200
