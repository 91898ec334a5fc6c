"""Live push over WebSocket and SSE against a real uvicorn, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
from contextlib import closing
from datetime import timedelta

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from lifeline.accounts import security
from lifeline.accounts.models import WebSession
from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.deps import SESSION_COOKIE
from tests.realtime.clients import (
    API,
    sse_stream,
    wait_connections,
    ws_stream,
    ws_url,
)
from tests.support.factories import Factory, Person, escalate, new_session


async def claim(http: httpx.AsyncClient, person: Person, handoff: dict[str, str]) -> httpx.Response:
    return await http.post(
        f"{API}/ai-sessions/{handoff['session_id']}/handoffs/{handoff['id']}/claim",
        headers=person.headers,
    )


async def open_queue(http: httpx.AsyncClient, person: Person) -> list[str]:
    response = await http.get(f"{API}/ai-sessions/queue", headers=person.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def test_escalation_reaches_websocket_and_sse_and_a_claim_tells_everyone(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin", other="engineer", vic="viewer")
    junior, senior, other = team["junior"], team["senior"], team["other"]
    async with (
        ws_stream(live, senior) as senior_ws,
        sse_stream(http, other) as other_sse,
        ws_stream(live, junior) as junior_ws,
    ):
        for person in (senior, other, junior):
            await wait_connections(http, person, 1)
        session = await new_session(http, junior)
        handoff = await escalate(http, junior, session["id"], note="deadlock on CI")

        pushed_ws = await senior_ws.next_of("handoff.escalated")
        pushed_sse = await other_sse.next_of("handoff.escalated")
        assert pushed_ws["data"] == handoff
        # WebSocket messages are exactly the SSE data lines.
        assert senior_ws.raw[-1] == other_sse.raw[-1]
        assert pushed_ws["id"] == pushed_sse["id"] and pushed_ws["id"].isdigit()
        assert handoff["id"] in await open_queue(http, other)

        assert (await claim(http, senior, handoff)).status_code == 200
        claimed = await other_sse.next_of("handoff.claimed")
        assert claimed["data"]["id"] == handoff["id"]
        assert claimed["data"]["status"] == "claimed"
        assert int(claimed["id"]) > int(pushed_sse["id"])
        # What the pushed claim tells the other seniors' queues: the item is gone.
        assert handoff["id"] not in await open_queue(http, other)

        # The escalator sees their escalation go out and learns who picked it up.
        assert (await junior_ws.next_of("handoff.escalated"))["data"]["id"] == handoff["id"]
        told = await junior_ws.next_of("handoff.claimed")
        assert told["data"]["claimed_by"] == senior.id
        assert (await senior_ws.next_of("handoff.claimed"))["data"]["claimed_by"] == senior.id


async def test_another_account_receives_nothing(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    ours = await factory.team(junior="engineer", senior="engineer")
    theirs = await factory.team(junior="engineer", senior="engineer")
    async with (
        ws_stream(live, theirs["senior"]) as their_ws,
        sse_stream(http, theirs.owner) as their_sse,
    ):
        await wait_connections(http, theirs["senior"], 1)
        await wait_connections(http, theirs.owner, 1)
        session = await new_session(http, ours["junior"])
        await escalate(http, ours["junior"], session["id"])
        # A marker in their own account: whatever they were sent before it would arrive first.
        marker_session = await new_session(http, theirs["junior"])
        marker = await escalate(http, theirs["junior"], marker_session["id"])
        for stream in (their_ws, their_sse):
            first = await stream.next()
            assert first["type"] == "handoff.escalated" and first["data"] == marker


async def test_a_park_reaches_only_its_creator(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    junior, senior = team["junior"], team["senior"]
    async with ws_stream(live, junior) as junior_ws, sse_stream(http, senior) as senior_sse:
        await wait_connections(http, junior, 1)
        await wait_connections(http, senior, 1)
        parked_session = await new_session(http, junior, title="set aside")
        park = await escalate(http, junior, parked_session["id"], intent="park")
        parked = await junior_ws.next_of("handoff.parked")
        assert parked["data"] == park

        marker_session = await new_session(http, junior, title="needs help")
        marker = await escalate(http, junior, marker_session["id"])
        # The admin's first event is the escalation: the park never reached them.
        assert (await senior_sse.next())["data"] == marker
        assert (await junior_ws.next_of("handoff.escalated"))["data"] == marker


async def test_sse_reconnect_with_last_event_id_replays_the_gap_once(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", other="engineer")
    junior, senior, other = team["junior"], team["senior"], team["other"]
    first_session = await new_session(http, junior, title="first")
    async with sse_stream(http, other) as before:
        await wait_connections(http, other, 1)
        first = await escalate(http, junior, first_session["id"])
        seen = await before.next_of("handoff.escalated")
        assert seen["data"] == first
    await wait_connections(http, other, 0)

    # While the client is away: a claim and a second escalation.
    assert (await claim(http, senior, first)).status_code == 200
    second_session = await new_session(http, junior, title="second")
    second = await escalate(http, junior, second_session["id"])

    async with sse_stream(http, other, last_event_id=seen["id"]) as after:
        missed_claim = await after.next_of("handoff.claimed")
        missed_escalation = await after.next_of("handoff.escalated")
        assert missed_claim["data"]["id"] == first["id"]
        assert missed_escalation["data"] == second
        # Then live, continuing from the replay.
        third_session = await new_session(http, junior, title="third")
        third = await escalate(http, junior, third_session["id"])
        live_one = await after.next_of("handoff.escalated")
        assert live_one["data"] == third
        ids = [int(e["id"]) for e in (missed_claim, missed_escalation, live_one)]
        assert ids == sorted(set(ids)) and ids[0] > int(seen["id"])
        assert after.pending() == []

    # ?last_event_id= does the same (a WebSocket client's way to ask for replay).
    async with ws_stream(live, other, last_event_id=seen["id"]) as replayed:
        got = [await replayed.next() for _ in range(3)]
        assert [int(e["id"]) for e in got] == ids


async def test_replay_then_live_has_no_gap_and_no_duplicate(
    live: str, http: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    junior, senior = team["junior"], team["senior"]
    handoffs = []
    for n in range(5):
        session = await new_session(http, junior, title=f"s{n}")
        handoffs.append(await escalate(http, junior, session["id"]))
    async with ws_stream(live, senior, last_event_id="0") as stream:
        # Escalations committing while the replay may still be running.
        for n in range(5, 10):
            session = await new_session(http, junior, title=f"s{n}")
            handoffs.append(await escalate(http, junior, session["id"]))
        got = [await stream.next_of("handoff.escalated") for _ in range(10)]
        assert [e["data"]["id"] for e in got] == [h["id"] for h in handoffs]
        await ctx.tasks.drain()
        # One more live event after everything settled: it comes next, nothing repeated before it.
        last_session = await new_session(http, junior, title="last")
        last = await escalate(http, junior, last_session["id"])
        assert (await stream.next())["data"] == last


async def test_last_event_id_must_be_an_event_id(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team()
    response = await http.get(
        f"{API}/events", params={"last_event_id": "abc"}, headers=team.owner.headers
    )
    assert response.status_code == 422
    assert "last_event_id" in response.json()["detail"]
    response = await http.get(
        f"{API}/events", headers={**team.owner.headers, "Last-Event-ID": "-3"}
    )
    assert response.status_code == 422
    assert "Last-Event-ID" in response.json()["detail"]


async def test_streams_need_authentication(live: str, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{API}/events")
    assert response.status_code == 401
    response = await http.get(f"{API}/events", headers={"Authorization": "Bearer lfl_nope"})
    assert response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(live), additional_headers={"Authorization": "Bearer lfl_x"}):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}")["detail"]


async def sign_in(ctx: AppContext, person: Person) -> tuple[str, str]:
    """A web sign-in session of ``person``; returns (its id, the cookie's secret)."""
    secret = "web_" + security.new_api_token()[0]
    async with ctx.sessionmaker() as db, db.begin():
        web_session = WebSession(
            user_id=person.id,
            token_hash=security.hash_secret(secret),
            csrf_token="csrf",
            expires_at=utcnow() + timedelta(hours=1),
        )
        db.add(web_session)
    return web_session.id, secret


async def test_session_cookie_needs_the_apps_own_origin(
    live: str, http: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    _id, secret = await sign_in(ctx, team["senior"])
    cookie = {"Cookie": f"{SESSION_COOKIE}={secret}"}
    own_origin = ctx.settings.base_url

    # Cross-site WebSocket hijacking: a page elsewhere opening our socket with the cookie.
    for origin in ("http://evil.example", "null", "http://testserver.evil.example"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(live), additional_headers=cookie, origin=origin):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403
    # No Origin at all is refused as well for a WebSocket.
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(live), additional_headers=cookie):
            pass
    assert refused.value.response.status_code == 403
    response = await http.get(f"{API}/events", headers={**cookie, "Origin": "http://evil.example"})
    assert response.status_code == 403

    # From the app's own pages the cookie works, over WebSocket and over SSE.
    async with (
        ws_stream(live, headers=cookie, origin=own_origin) as ws,
        sse_stream(http, headers={**cookie, "Sec-Fetch-Site": "same-origin"}) as sse,
    ):
        await wait_connections(http, team["senior"], 2)
        session = await new_session(http, team["junior"])
        handoff = await escalate(http, team["junior"], session["id"])
        assert (await ws.next())["data"] == handoff
        assert (await sse.next())["data"] == handoff


async def test_revoking_the_token_closes_its_live_connections(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(senior="engineer")
    senior = team["senior"]
    created = await http.post(f"{API}/tokens", headers=senior.headers, json={"name": "laptop"})
    assert created.status_code == 201, created.text
    laptop = Person(senior.user, created.json()["token"])
    async with (
        ws_stream(live, laptop) as laptop_ws,
        sse_stream(http, laptop) as laptop_sse,
        ws_stream(live, senior) as other_token_ws,
    ):
        await wait_connections(http, senior, 3)
        revoked = await http.delete(f"{API}/tokens/{created.json()['id']}", headers=senior.headers)
        assert revoked.status_code in (200, 204), revoked.text
        await laptop_ws.wait_ended()
        await laptop_sse.wait_ended()
        assert laptop_ws.close_code == 4401
        # The user's other token keeps its connection.
        await wait_connections(http, senior, 1)
        assert not other_token_ws.ended.is_set()
    response = await http.get(f"{API}/events", headers=laptop.headers)
    assert response.status_code == 401


async def test_removing_a_user_closes_their_connections(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(leaver="engineer")
    leaver = team["leaver"]
    async with ws_stream(live, leaver) as ws, sse_stream(http, leaver) as sse:
        await wait_connections(http, leaver, 2, viewer=team.owner)
        removed = await http.delete(f"{API}/users/{leaver.id}", headers=team.owner.headers)
        assert removed.status_code in (200, 204), removed.text
        await ws.wait_ended()
        await sse.wait_ended()
        assert ws.close_code == 4401


async def test_presence_lists_the_account_with_live_connections(
    live: str, http: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(senior="engineer", away="engineer", vic="viewer")
    elsewhere = await factory.team(stranger="engineer")
    presence = ctx.presence
    async with (
        ws_stream(live, team["senior"]),
        sse_stream(http, team["senior"]),
        ws_stream(live, elsewhere["stranger"]),
    ):
        await wait_connections(http, team["senior"], 2, viewer=team["vic"])
        response = await http.get(f"{API}/presence", headers=team["vic"].headers)
        assert response.status_code == 200
        items = {item["user"]["id"]: item for item in response.json()["items"]}
        assert set(items) == {team.owner.id, team["senior"].id, team["away"].id, team["vic"].id}
        assert items[team["senior"].id] == {
            "user": {"id": team["senior"].id, "name": team["senior"].name},
            "online": True,
            "connections": 2,
        }
        assert items[team["away"].id]["online"] is False
        assert items[team["away"].id]["connections"] == 0
        assert await presence.is_online(team["senior"].id) is True
        assert await presence.is_online(team["away"].id) is False
    await wait_connections(http, team["senior"], 0, viewer=team["vic"])
    assert await presence.is_online(team["senior"].id) is False


async def test_a_role_change_reconnects_with_the_new_view(
    live: str, http: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", lead="admin")
    junior, lead = team["junior"], team["lead"]
    session = await new_session(http, junior, title="private")

    async def say(text: str) -> None:
        response = await http.post(
            f"{API}/ai-sessions/{session['id']}/messages",
            headers=junior.headers,
            json={"role": "user", "content": text},
        )
        assert response.status_code == 201, response.text

    async with ws_stream(live, lead) as as_admin:
        await wait_connections(http, lead, 1)
        # An admin reads every session of the account, escalated or not.
        await say("first")
        assert (await as_admin.next_of("session.message"))["data"]["content"] == "first"
        demoted = await http.patch(
            f"{API}/users/{lead.id}", headers=team.owner.headers, json={"role": "engineer"}
        )
        assert demoted.status_code == 200, demoted.text
        await as_admin.wait_ended()
        assert as_admin.close_code == 4401
    async with ws_stream(live, lead) as as_engineer:
        await wait_connections(http, lead, 1)
        await say("second")
        marker_session = await new_session(http, junior, title="help")
        marker = await escalate(http, junior, marker_session["id"])
        # As an engineer, the lead no longer sees someone else's private session.
        assert (await as_engineer.next())["data"] == marker


async def wait_pool_idle(ctx: AppContext) -> None:
    """Until the server has handed back every database connection it has checked out."""
    for _ in range(500):
        if not ctx.engine.pool.checkedout():  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the server kept a database connection checked out for 10 s")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_broken_database_at_connect_is_a_503_to_retry(
    live: str, http: httpx.AsyncClient, factory: Factory, ctx: AppContext, database_url: str
) -> None:
    team = await factory.team(senior="engineer")
    path = database_url.split("///", 1)[1]
    await wait_pool_idle(ctx)
    await ctx.engine.dispose()
    # Everything committed so far goes into the file itself, so that it travels with the file
    # (the empty database would otherwise take over the write-ahead log holding the team).
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.replace(path, path + ".away")
    try:
        # The server finds no accounts at all (a new, empty database file): a fault, not a 500.
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(live), additional_headers=team["senior"].headers):
                pass
        assert refused.value.response.status_code == 503
    finally:
        # Put the real file back before dropping the pool, and only once the server has returned
        # every connection it opened on the empty file: a connection returned after the dispose
        # would keep pointing at the empty file.
        await wait_pool_idle(ctx)
        os.replace(path + ".away", path)
        await ctx.engine.dispose()
    async with ws_stream(live, team["senior"]):
        await wait_connections(http, team["senior"], 1)


@pytest.mark.parametrize("origin", ["http://127.0.0.1:99999", "http://[::1", "http://testserver:x"])
async def test_a_malformed_origin_with_the_cookie_is_403(
    live: str, http: httpx.AsyncClient, factory: Factory, ctx: AppContext, origin: str
) -> None:
    team = await factory.team(senior="engineer")
    _id, secret = await sign_in(ctx, team["senior"])
    cookie = {"Cookie": f"{SESSION_COOKIE}={secret}"}
    response = await http.get(f"{API}/events", headers={**cookie, "Origin": origin})
    assert response.status_code == 403, response.text
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(live), additional_headers={**cookie, "Origin": origin}):
            pass
    assert refused.value.response.status_code == 403


async def test_a_refused_websocket_is_logged_at_info_not_as_an_error(
    live: str, factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    """Anyone can knock: a refusal must not flood the error log."""
    team = await factory.team(senior="engineer")
    with caplog.at_level(logging.INFO):
        for headers in ({}, {"Authorization": "Bearer lfl_nope"}, {"Cookie": "lifeline_session=x"}):
            with pytest.raises(InvalidStatus):
                async with connect(ws_url(live), additional_headers=headers):
                    pass
        async with ws_stream(live, team["senior"]):
            pass
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert errors == [], [r.getMessage() for r in errors]
    refused = [r for r in caplog.records if "refused" in r.getMessage().lower()]
    assert len(refused) == 3 and all(r.levelno == logging.INFO for r in refused)
