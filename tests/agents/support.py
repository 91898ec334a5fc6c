"""An MCP agent over streamable HTTP against a live server, the way Claude Code connects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, Implementation


@asynccontextmanager
async def http_agent(
    base: str, token: str, *, path: str = "/mcp/", client: str = "claude-code"
) -> AsyncIterator[Client]:
    http = httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30, read=120)
    )
    async with (
        http,
        Client(
            streamable_http_client(base + path, http_client=http),
            client_info=Implementation(name=client, title="Claude Code", version="2.1"),
        ) as agent,
    ):
        yield agent


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content
