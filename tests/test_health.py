"""Liveness and readiness probes, outside /api/v1 and without authentication."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

import httpx
import pytest

from lifeline.app import create_app
from lifeline.config import Settings
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


async def test_the_served_app_freezes_what_start_up_built(settings: Settings) -> None:
    """``lifeline serve``'s app leaves its start-up objects out of the cycle collector's
    walks (``gc.freeze``) once started; an app built for tests or embedding does not."""
    gc.unfreeze()
    try:
        plain = create_app(settings, plugins=[])
        async with plain.router.lifespan_context(plain):
            assert gc.get_freeze_count() == 0
        served = create_app(settings, plugins=[], freeze_heap=True)
        async with served.router.lifespan_context(served):
            assert gc.get_freeze_count() > 0
            # Still answering; frozen objects are still freed by reference counting.
            transport = httpx.ASGITransport(app=served)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                assert (await client.get("/healthz")).status_code == 200
    finally:
        gc.unfreeze()
