"""Liveness and readiness probes, outside /api/v1 and without authentication."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from lifeline.app import create_app
from tests.conftest import make_settings
from tests.support.live import free_port


async def test_healthz_and_readyz_answer(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok"}


@pytest.mark.parametrize("which", ["sqlite", "postgres"])
async def test_readyz_is_503_while_the_database_is_unreachable(tmp_path: Path, which: str) -> None:
    """A real unreachable database: a directory that doesn't exist, a port nobody listens on."""
    url = (
        f"sqlite+aiosqlite:///{tmp_path}/missing-dir/lifeline.db"
        if which == "sqlite"
        else f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/lifeline"
    )
    before = set(threading.enumerate())
    app = create_app(make_settings(url), plugins=[])
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            ready = await client.get("/readyz")
            health = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable", "database": "unreachable"}
    # Liveness says the process is up: restarting it would not bring the database back.
    assert health.status_code == 200
    await _let_driver_threads_finish(before)


async def _let_driver_threads_finish(before: set[threading.Thread]) -> None:
    """aiosqlite stops a failed connection's thread without awaiting it; if this test's loop
    closed first, the thread would fail delivering to it. Wait (bounded) until it is done."""
    for _ in range(1000):
        if not [t for t in threading.enumerate() if t not in before and t.is_alive()]:
            return
        await asyncio.sleep(0.01)
