"""The MCP server in-process: the SDK's own client against the app's server, as a token's user.

In-process there is no HTTP and so no bearer header; the verified token is put where the
SDK's auth middleware puts it, so the tools see exactly what they see over HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI
from mcp import Client
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from lifeline.config import Settings
from tests.conftest import make_settings
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


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Progress every 0.2 s so a one-second wait shows it; waits still wake on events first.
    return make_settings(database_url, agent_progress_seconds=0.2)
