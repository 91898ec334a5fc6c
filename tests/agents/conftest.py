"""The MCP server in-process: the SDK's own client against the app's server, as a token's user.

In-process there is no HTTP and so no bearer header; the verified token is put where the
SDK's auth middleware puts it, so the tools see exactly what they see over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from tests.support.factories import Person


@asynccontextmanager
async def agent(app: FastAPI, person: Person) -> AsyncIterator[Client]:
    verified = AccessToken(token=person.token, client_id="test", scopes=[], subject=person.id)
    reset = auth_context_var.set(AuthenticatedUser(verified))
    try:
        async with Client(app.state.mcp) as client:
            yield client
    finally:
        auth_context_var.reset(reset)
