"""Request ids on every answer, the request body cap, and a request run again after a deadlock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from lifeline.app import create_app
from lifeline.config import Settings
from lifeline.context import AppContext
from tests.conftest import make_settings
from tests.support.factories import Factory, escalate, new_session

LIMIT = 4096


@pytest.fixture
async def small_app(database_url: str) -> AsyncIterator[FastAPI]:
    settings: Settings = make_settings(database_url, max_body_bytes=LIMIT)
    application = create_app(settings, plugins=[])
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def small_client(small_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=small_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


async def _session_count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    response = await client.get("/api/v1/ai-sessions", headers=headers)
    assert response.status_code == 200
    return len(response.json()["items"])


async def test_an_oversized_body_is_a_413_and_writes_nothing(
    small_app: FastAPI, small_client: httpx.AsyncClient
) -> None:
    ctx: AppContext = small_app.state.ctx
    team = await Factory(ctx.sessionmaker).team()
    headers = team.owner.headers
    big = {"title": "t", "messages": [{"content": "x" * LIMIT}]}
    response = await small_client.post("/api/v1/ai-sessions", headers=headers, json=big)
    assert response.status_code == 413
    assert response.json() == {"detail": f"Request body too large: at most {LIMIT} bytes"}
    assert response.headers["X-Request-ID"]
    assert await _session_count(small_client, headers) == 0

    fits = {"title": "t", "messages": [{"content": "x" * (LIMIT // 2)}]}
    ok = await small_client.post("/api/v1/ai-sessions", headers=headers, json=fits)
    assert ok.status_code == 201, ok.text
    assert await _session_count(small_client, headers) == 1


async def test_a_chunked_body_without_length_is_capped_too(
    small_app: FastAPI, small_client: httpx.AsyncClient
) -> None:
    ctx: AppContext = small_app.state.ctx
    team = await Factory(ctx.sessionmaker).team()
    payload = b'{"title": "t", "messages": [{"content": "' + b"y" * LIMIT + b'"}]}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 1000):
            yield payload[start : start + 1000]

    response = await small_client.post(
        "/api/v1/ai-sessions",
        headers={**team.owner.headers, "Content-Type": "application/json"},
        content=chunks(),
    )
    assert response.status_code == 413
    assert "at most" in response.json()["detail"]

    small = b'{"title": "chunked but small"}'

    async def small_chunks() -> AsyncIterator[bytes]:
        yield small[:10]
        yield small[10:]

    ok = await small_client.post(
        "/api/v1/ai-sessions",
        headers={**team.owner.headers, "Content-Type": "application/json"},
        content=small_chunks(),
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["title"] == "chunked but small"


async def test_request_ids_are_echoed_generated_or_replaced(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "lb-1234.abc"})
    assert echoed.headers["X-Request-ID"] == "lb-1234.abc"
    generated = await client.get("/healthz")
    other = await client.get("/healthz")
    assert len(generated.headers["X-Request-ID"]) == 32
    assert generated.headers["X-Request-ID"] != other.headers["X-Request-ID"]
    # A header that could forge log lines is not trusted.
    forged = await client.get("/healthz", headers={"X-Request-ID": 'x" level=error'})
    assert forged.headers["X-Request-ID"] != 'x" level=error'
    assert len(forged.headers["X-Request-ID"]) == 32


async def _wait_until_blocked_by(engine: AsyncEngine, pid: int) -> None:
    """Until some backend waits on a lock that backend ``pid`` holds."""
    async with engine.connect() as conn:
        for _ in range(3000):
            blocked = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE :pid = ANY(pg_blocking_pids(pid))"
                ),
                {"pid": pid},
            )
            if blocked:
                return
            await asyncio.sleep(0.01)
    raise AssertionError("nothing ever waited on the row")


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_request_that_loses_a_deadlock_runs_again_instead_of_a_500(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, database_url: str
) -> None:
    """A real deadlock: another transaction holds the escalation's row, the Pick Up share-locks
    its claimer and waits on that row, then the other asks for the claimer's row. PostgreSQL
    aborts the claim (its deadlock check fires first); it runs again and wins."""
    team = await factory.team(junior="engineer", claimer="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    claim_path = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim"

    other = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with other.connect() as conn:
            # The claim's own check (1 s by default) must fire first, so it is the one aborted.
            await conn.execute(text("SET deadlock_timeout = '30s'"))
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
            await conn.execute(
                text("UPDATE handoffs SET note = note WHERE id = :id"), {"id": handoff["id"]}
            )
            claim = asyncio.create_task(client.post(claim_path, headers=team["claimer"].headers))
            await _wait_until_blocked_by(other, pid)
            await conn.execute(
                text("UPDATE users SET name = name WHERE id = :id"), {"id": team["claimer"].id}
            )
            await conn.commit()
        response = await claim
    finally:
        await other.dispose()
    assert response.status_code == 200, response.text
    assert response.json()["claimed_by"] == team["claimer"].id
