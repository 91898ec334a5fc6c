"""A real uvicorn serving the test's app on a loopback port, for WebSocket and SSE clients."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.support.live import free_port


@pytest.fixture
async def live(app: FastAPI) -> AsyncIterator[str]:
    """The ``app`` fixture (lifespan already running) behind uvicorn; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(15):
            await task


@pytest.fixture
async def http(live: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the live server (the API as any client sees it)."""
    async with httpx.AsyncClient(base_url=live, timeout=10) as client:
        yield client
