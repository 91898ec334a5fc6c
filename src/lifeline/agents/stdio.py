"""``lifeline mcp``: the same tools over stdio, for agents that only launch local commands.

A proxy, not a second server: it opens no database, and forwards every tool call to a Lifeline
server's MCP endpoint over streamable HTTP with the user's token, progress notifications
included, so the waits behave exactly as they do over HTTP. The upstream connection is made on
the first request and introduces itself with the local client's own name, so the session page
still says which agent it was.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.types import (
    CallToolRequestParams,
    CallToolResult,
    Implementation,
    ListToolsResult,
    PaginatedRequestParams,
)

from lifeline import __version__

FALLBACK_CLIENT = Implementation(name="lifeline-mcp", title="lifeline mcp", version=__version__)


def mcp_endpoint(base_url: str) -> str:
    return base_url.rstrip("/") + "/mcp/"


class Upstream:
    """One MCP client connection to the server, owned by a task of its own."""

    def __init__(self, base_url: str, token: str) -> None:
        self.base_url = base_url
        self.token = token
        self._client: asyncio.Future[Client] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def client(self, client_info: Implementation | None) -> Client:
        if self._client is None:
            self._client = asyncio.get_running_loop().create_future()
            self._task = asyncio.create_task(self._run(client_info or FALLBACK_CLIENT))
        return await asyncio.shield(self._client)

    async def _run(self, client_info: Implementation) -> None:
        assert self._client is not None
        try:
            http = httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=httpx2.Timeout(30, read=120),
            )
            async with (
                http,
                Client(
                    streamable_http_client(mcp_endpoint(self.base_url), http_client=http),
                    client_info=client_info,
                ) as client,
            ):
                self._client.set_result(client)
                await self._stop.wait()
        except BaseException as exc:
            if not self._client.done():
                self._client.set_exception(exc)
            raise

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._task


def build_proxy(base_url: str, token: str) -> Server[Upstream]:
    @asynccontextmanager
    async def lifespan(_server: Server[Upstream]) -> AsyncIterator[Upstream]:
        upstream = Upstream(base_url, token)
        try:
            yield upstream
        finally:
            await upstream.close()

    def client_info(ctx: Any) -> Implementation | None:
        params = ctx.session.client_params
        return params.client_info if params is not None else None

    async def list_tools(ctx: Any, _params: PaginatedRequestParams | None) -> ListToolsResult:
        client = await ctx.lifespan_context.client(client_info(ctx))
        result: ListToolsResult = await client.list_tools()
        return result

    async def call_tool(ctx: Any, params: CallToolRequestParams) -> CallToolResult:
        client = await ctx.lifespan_context.client(client_info(ctx))

        async def forward(progress: float, total: float | None, message: str | None) -> None:
            await ctx.session.report_progress(progress, total, message)

        result: CallToolResult = await client.call_tool(
            params.name, params.arguments or {}, progress_callback=forward
        )
        return result

    return Server(
        "lifeline",
        version=__version__,
        lifespan=lifespan,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


async def serve_stdio(base_url: str, token: str) -> None:
    server = build_proxy(base_url, token)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())
