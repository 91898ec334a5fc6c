"""The MCP server's streamable HTTP endpoint, served at /mcp/ and /mcp."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from lifeline.agents.server import build_server
from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.middleware import BodySizeLimitMiddleware, RequestIdMiddleware
from lifeline.realtime.fast_path import route_path
from lifeline.web.headers import SecurityHeaders

MOUNT = "/mcp"


class McpFastPath:
    """``/mcp`` served ahead of the application's HTTP middleware stack, as ``/api/v1/ws`` is.

    An agent's wait is one request held open for up to 50 s, and one process holds a thousand:
    every layer of the stack would keep its frames alive per waiting agent while doing nothing
    for it (FastAPI's error pages and exception handlers don't apply: the SDK answers its own
    errors). What the endpoint needs is kept, in the same order: the request id and access log,
    the body cap, the security headers. ``/mcp`` answers as ``/mcp/`` does (MCP clients don't all
    follow a 307 with a POST body).
    """

    def __init__(self, app: ASGIApp, *, mcp: ASGIApp, max_body_bytes: int, https: bool) -> None:
        self.app = app
        self.mcp: ASGIApp = RequestIdMiddleware(
            BodySizeLimitMiddleware(SecurityHeaders(mcp, https=https), max_bytes=max_body_bytes)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        if path != MOUNT and not path.startswith(MOUNT + "/"):
            await self.app(scope, receive, send)
            return
        root = scope.get("root_path", "")
        full = root + (MOUNT + "/" if path == MOUNT else path)
        # As a Starlette mount hands it over (updating the request's scope in place): the
        # endpoint's own routes start at "/".
        scope.update(path=full, raw_path=full.encode(), root_path=root + MOUNT)
        await self.mcp(scope, receive, send)


class McpEndpoint:
    """The SDK's HTTP app, made afresh for each run of the application's lifespan.

    A session manager runs once only, and one application may be started more than once (tests
    do), so each start builds a new one and this mount point forwards to it.
    """

    def __init__(self, server: MCPServer) -> None:
        self.server = server
        self._app: ASGIApp | None = None
        self._endpoint: ASGIApp | None = None

    def rebuild(self) -> None:
        app = self.server.streamable_http_app(
            streamable_http_path="/",
            # Bearer tokens only (no cookies), so a DNS-rebinding page has nothing to ride on;
            # the SDK's default Host allow-list would refuse every host name but localhost.
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._app = app
        self._endpoint = _endpoint_of(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None or self._endpoint is None:
            raise RuntimeError("the MCP endpoint is used before the application started")
        if route_path(scope) == "/":
            await self._endpoint(scope, receive, send)
        else:  # the SDK's other routes (its protected-resource metadata)
            await self._app(scope, receive, send)


def _endpoint_of(app: Starlette) -> ASGIApp:
    """The SDK's endpoint at "/" behind the SDK's own middleware (bearer authentication and its
    context), without the Starlette application around them.

    The application's layers (its error page, exception handlers and router) do nothing for an
    MCP request (the SDK answers its own errors, uvicorn a crash) but each keeps a frame alive
    for as long as the request runs, and an agent's wait runs for up to 50 s, a thousand at
    once. Built from what the SDK configured, so its authentication is used as it set it up.
    """
    route = next(r for r in app.routes if isinstance(r, Route) and r.path == "/")
    endpoint: ASGIApp = route.app
    for cls, args, kwargs in reversed(app.user_middleware):
        endpoint = cls(endpoint, *args, **kwargs)
    return endpoint


def install(app: FastAPI, settings: Settings) -> McpEndpoint:
    """Build the endpoint; the application serves it through :class:`McpFastPath`, and the
    caller runs :func:`start` in its lifespan."""

    def context() -> AppContext:
        ctx: AppContext = app.state.ctx
        return ctx

    server = build_server(
        context, base_url=settings.base_url, progress_every=settings.agent_progress_seconds
    )
    return McpEndpoint(server)


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
