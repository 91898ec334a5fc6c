"""The MCP endpoint of a live ``lifeline serve`` on loopback, driven by the SDK's HTTP client.

The whole loop runs as one test: an agent escalates with a brief and a transcript, a senior's
WebSocket and the mail server hear of it, the senior picks it up, replies and resolves with an
answer over HTTP, and the agent's pending waits return each step.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from lifeline.db import create_engine, create_sessionmaker
from tests.agents.support import http_agent, ok
from tests.realtime.clients import API, ws_stream
from tests.support.factories import Factory, Person
from tests.support.live import live_server
from tests.support.smtp import smtp_recorder

pytestmark = pytest.mark.slow

BRIEF = {
    "ask": "Which lock order avoids the payments deadlock?",
    "tried": "Swapped the two UPDATEs; CI still deadlocks.",
    "error": "ERROR: deadlock detected",
    "context": {"repo": "acme/payments", "branch": "fix/deadlock", "files": ["migrate.py"]},
}
TRANSCRIPT = [
    {"role": "user", "content": "The payments migration deadlocks on CI."},
    {"role": "assistant", "content": "Two transactions take the same locks in opposite order."},
]


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def factory(engine: AsyncEngine) -> Factory:
    """Writes straight to the live server's database."""
    return Factory(create_sessionmaker(engine))


async def progressed(seen: asyncio.Event) -> Any:
    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        seen.set()

    return on_progress


async def test_the_whole_loop_from_escalation_to_answer(
    database_url: str, tmp_path: Path, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", away="engineer")
    junior, senior, away = team["junior"], team["senior"], team["away"]
    with (
        smtp_recorder() as smtp,
        live_server(
            database_url,
            tmp_path,
            LIFELINE_SMTP_HOST="127.0.0.1",
            LIFELINE_SMTP_PORT=str(smtp.port),
            LIFELINE_AGENT_PROGRESS_SECONDS="0.2",
        ) as base,
    ):
        async with (
            httpx.AsyncClient(base_url=base, timeout=30) as http,
            ws_stream(base, senior) as senior_ws,
            http_agent(base, junior.token) as agent,
        ):
            created = ok(
                await agent.call_tool(
                    "escalate", {**BRIEF, "transcript": TRANSCRIPT, "external_id": "conv-1"}
                )
            )
            hid, sid = created["handoff_id"], created["session_id"]
            assert created["url"] == f"{base}/sessions/{sid}" and created["created"] is True

            pushed = await senior_ws.next_of("handoff.escalated")
            assert pushed["data"]["id"] == hid and pushed["data"]["brief"]["ask"] == BRIEF["ask"]
            async with asyncio.timeout(30):
                while not smtp.to(away.email):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
            [mail] = smtp.to(away.email)
            for part in (BRIEF["ask"], BRIEF["tried"], BRIEF["error"], "fix/deadlock"):
                assert part in mail.text
            assert TRANSCRIPT[1]["content"] in mail.text

            session = (await http.get(f"{API}/ai-sessions/{sid}", headers=senior.headers)).json()
            assert session["source"] == "mcp" and session["client_name"] == "Claude Code"

            # The agent waits; once it is waiting (it reports progress), the senior picks it up.
            waiting = asyncio.Event()
            pickup = asyncio.create_task(
                agent.call_tool(
                    "wait_for_pickup",
                    {"handoff_id": hid, "timeout_seconds": 50},
                    progress_callback=await progressed(waiting),
                )
            )
            await asyncio.wait_for(waiting.wait(), 30)
            claim = await http.post(
                f"{API}/ai-sessions/{sid}/handoffs/{hid}/claim", headers=senior.headers
            )
            assert claim.status_code == 200, claim.text
            picked = ok(await pickup)
            assert picked["status"] == "claimed"
            assert picked["claimed_by"] == {"id": senior.id, "name": senior.name}

            waiting = asyncio.Event()
            replies = asyncio.create_task(
                agent.call_tool(
                    "wait_for_reply",
                    {"session_id": sid, "timeout_seconds": 50},
                    progress_callback=await progressed(waiting),
                )
            )
            await asyncio.wait_for(waiting.wait(), 30)
            reply = await http.post(
                f"{API}/ai-sessions/{sid}/messages",
                headers=senior.headers,
                json={"role": "note", "content": "Take the accounts lock before the ledger."},
            )
            assert reply.status_code == 201, reply.text
            got = ok(await replies)
            assert [m["content"] for m in got["messages"]] == [
                "Take the accounts lock before the ledger."
            ]
            assert got["messages"][0]["author"]["id"] == senior.id

            waiting = asyncio.Event()
            final = asyncio.create_task(
                agent.call_tool(
                    "wait_for_reply",
                    {"session_id": sid, "after": got["messages"][0]["id"], "timeout_seconds": 50},
                    progress_callback=await progressed(waiting),
                )
            )
            await asyncio.wait_for(waiting.wait(), 30)
            resolved = await http.post(
                f"{API}/ai-sessions/{sid}/handoffs/{hid}/resolve",
                headers=senior.headers,
                json={"answer": "Lock accounts, then ledger, in every transaction."},
            )
            assert resolved.status_code == 200, resolved.text
            done = ok(await final)
            assert done["status"] == "resolved"
            assert done["answer"] == "Lock accounts, then ledger, in every transaction."
            view = ok(await agent.call_tool("get_handoff", {"handoff_id": hid}))
            assert view["status"] == "resolved" and view["answer"] == done["answer"]


async def test_no_token_or_a_revoked_one_is_a_401_and_mcp_answers_without_redirect(
    database_url: str, tmp_path: Path, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    junior: Person = team["junior"]
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }
    accept = {"Accept": "application/json, text/event-stream"}
    with live_server(database_url, tmp_path) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            for path in ("/mcp/", "/mcp"):
                anonymous = await http.post(
                    path, json=initialize, headers={**accept, "X-Request-ID": "agent-req-1"}
                )
                assert anonymous.status_code == 401, anonymous.text
                assert anonymous.headers["www-authenticate"].lower().startswith("bearer")
                # Served ahead of the app's middleware stack, it keeps what that stack gives.
                assert anonymous.headers["x-request-id"] == "agent-req-1"
                assert anonymous.headers["x-content-type-options"] == "nosniff"
                wrong = await http.post(
                    path, json=initialize, headers={**accept, "Authorization": "Bearer lfl_nope"}
                )
                assert wrong.status_code == 401
            # A path that only starts alike is the application's, not the endpoint's.
            assert (await http.get("/mcpx", headers=junior.headers)).status_code == 404
            # The SDK's other routes under the endpoint are still its own.
            metadata = await http.get("/mcp/.well-known/oauth-protected-resource/mcp")
            assert metadata.status_code == 200, metadata.text
            assert metadata.json()["resource"] == f"{base}/mcp"
            assert (await http.get("/mcp/nothing-here")).status_code == 404

            # Both paths serve the endpoint itself (no 307 for a client to mishandle).
            for path in ("/mcp", "/mcp/"):
                async with http_agent(base, junior.token, path=path) as agent:
                    assert len((await agent.list_tools()).tools) == 5

            tokens = await http.get(f"{API}/tokens", headers=junior.headers)
            token_id = tokens.json()["items"][0]["id"]
            # A second token to revoke the first with (a token can revoke itself, too).
            revoked = await http.delete(f"{API}/tokens/{token_id}", headers=junior.headers)
            assert revoked.status_code in (200, 204), revoked.text
            after = await http.post("/mcp/", json=initialize, headers={**accept, **junior.headers})
            assert after.status_code == 401
