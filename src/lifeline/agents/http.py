"""Mounting the MCP server's streamable HTTP endpoint in the application at /mcp/ and /mcp."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.types import ASGIApp, Receive, Scope, Send

from lifeline.agents.server import build_server
from lifeline.config import Settings
from lifeline.context import AppContext

MOUNT = "/mcp"


class McpExactPath:
    """``/mcp`` answers as ``/mcp/`` does: MCP clients don't all follow a 307 with a POST body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == MOUNT:
            scope = {**scope, "path": MOUNT + "/", "raw_path": (MOUNT + "/").encode()}
        await self.app(scope, receive, send)


class McpEndpoint:
    """The SDK's HTTP app, made afresh for each run of the application's lifespan.

    A session manager runs once only, and one application may be started more than once (tests
    do), so each start builds a new one and this mount point forwards to it.
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self._app: ASGIApp | None = None

    def rebuild(self) -> None:
        self._app = self.server.streamable_http_app(
            streamable_http_path="/",
            # Bearer tokens only (no cookies), so a DNS-rebinding page has nothing to ride on;
            # the SDK's default Host allow-list would refuse every host name but localhost.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            raise RuntimeError("the MCP endpoint is used before the application started")
        await self._app(scope, receive, send)


def install(app: FastAPI, settings: Settings) -> McpEndpoint:
    """Mount the endpoint; the caller runs :func:`start` in its lifespan."""

    def context() -> AppContext:
        ctx: AppContext = app.state.ctx
        return ctx

    server = build_server(
        context, base_url=settings.base_url, progress_every=settings.agent_progress_seconds
    )
    endpoint = McpEndpoint(server)
    app.mount(MOUNT, endpoint)
    app.add_middleware(McpExactPath)
    return endpoint


async def start(endpoint: McpEndpoint) -> Callable[[], Awaitable[None]]:
    """Run a new session manager in a task of its own until the returned stop is awaited.

    Its task group must be left by the task that entered it, and a lifespan's start and end
    don't always run in one task (test harnesses drive them from fixtures).
    """
    endpoint.rebuild()
    server = endpoint.server
    ready = asyncio.Event()
    stop = asyncio.Event()

    async def run() -> None:
        async with server.session_manager.run():
            ready.set()
            await stop.wait()

    task = asyncio.create_task(run(), name="mcp-session-manager")
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        waiter.cancel()
        task.result()  # start-up failed: raise it here

    async def close() -> None:
        stop.set()
        await task

    return close
