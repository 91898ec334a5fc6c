"""The MCP tools in-process (the SDK client against the app's server), SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import FastAPI
from mcp.types import CallToolResult

from lifeline.agents.waits import clamp_timeout
from tests.agents.conftest import agent
from tests.support.factories import Factory, Person

API = "/api/v1"


def ok(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def refusal(result: CallToolResult) -> str:
    assert result.is_error
    text: str = result.content[0].text  # type: ignore[union-attr]
    return text


async def open_queue(client: httpx.AsyncClient, person: Person) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/ai-sessions/queue", headers=person.headers)
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_the_five_tools_are_listed(app: FastAPI, factory: Factory) -> None:
    team = await factory.team(junior="engineer")
    async with agent(app, team["junior"]) as mcp:
        names = {tool.name for tool in (await mcp.list_tools()).tools}
    assert names == {"escalate", "wait_for_pickup", "wait_for_reply", "get_handoff", "post_message"}


async def test_escalate_returns_at_once_with_the_brief_and_transcript_stored(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    async with agent(app, team["junior"]) as mcp:
        created = ok(
            await mcp.call_tool(
                "escalate",
                {
                    "ask": "Which lock order avoids the deadlock?",
                    "tried": "Swapped the UPDATEs",
                    "error": "deadlock detected",
                    "context": {"repo": "acme/payments", "branch": "main", "files": ["a.py"]},
                    "transcript": [
                        {"role": "user", "content": "CI deadlocks"},
                        {"role": "assistant", "content": "Let me look"},
                        {"role": "tool", "content": "pytest: 1 failed"},
                    ],
                },
            )
        )
        assert created["status"] == "open" and created["created"] is True
        assert created["url"] == f"http://testserver/sessions/{created['session_id']}"
        view = ok(await mcp.call_tool("get_handoff", {"handoff_id": created["handoff_id"]}))
    assert view["brief"]["ask"] == "Which lock order avoids the deadlock?"
    assert view["brief"]["context"]["files"] == ["a.py"]
    assert view["status"] == "open" and view["claimed_by"] is None

    [item] = await open_queue(client, team["senior"])
    assert item["id"] == created["handoff_id"] and item["note"].startswith("Which lock order")
    session = await client.get(
        f"{API}/ai-sessions/{created['session_id']}", headers=team["senior"].headers
    )
    assert session.json()["source"] == "mcp"
    messages = await client.get(
        f"{API}/ai-sessions/{created['session_id']}/messages", headers=team["senior"].headers
    )
    assert [m["role"] for m in messages.json()["items"]] == ["user", "assistant", "tool"]


async def test_the_same_key_or_conversation_makes_one_handoff(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    async with agent(app, team["junior"]) as mcp:
        args = {"ask": "help", "idempotency_key": "k-1"}
        first = ok(await mcp.call_tool("escalate", args))
        again = ok(await mcp.call_tool("escalate", args))
        assert again["handoff_id"] == first["handoff_id"] and again["created"] is False

        by_conversation = {"ask": "help", "external_id": "conv-7"}
        one = ok(await mcp.call_tool("escalate", by_conversation))
        two = ok(await mcp.call_tool("escalate", by_conversation))
        assert two["handoff_id"] == one["handoff_id"] and two["created"] is False
        by_session = ok(
            await mcp.call_tool("escalate", {"ask": "x", "session_id": one["session_id"]})
        )
        assert by_session["handoff_id"] == one["handoff_id"] and by_session["created"] is False
    assert len(await open_queue(client, team["senior"])) == 2


async def test_another_accounts_ids_are_not_found_like_unknown_ones(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    stranger = (await factory.team(x="engineer"))["x"]
    async with agent(app, stranger) as mcp:
        theirs = ok(await mcp.call_tool("escalate", {"ask": "secret work"}))
    async with agent(app, team["junior"]) as mcp:
        foreign = refusal(await mcp.call_tool("get_handoff", {"handoff_id": theirs["handoff_id"]}))
        unknown = refusal(await mcp.call_tool("get_handoff", {"handoff_id": "no-such-id"}))
        assert foreign == unknown and "Handoff not found" in foreign
        waited = await mcp.call_tool("wait_for_pickup", {"handoff_id": theirs["handoff_id"]})
        assert "Handoff not found" in refusal(waited)
        for tool, args in (
            ("wait_for_reply", {"session_id": theirs["session_id"]}),
            ("post_message", {"session_id": theirs["session_id"], "content": "hi"}),
            ("escalate", {"ask": "x", "session_id": theirs["session_id"]}),
        ):
            assert "AI session not found" in refusal(await mcp.call_tool(tool, args))


async def test_a_viewer_cant_escalate_and_is_told_why(app: FastAPI, factory: Factory) -> None:
    team = await factory.team(vic="viewer")
    async with agent(app, team["vic"]) as mcp:
        text = refusal(await mcp.call_tool("escalate", {"ask": "help"}))
    assert "Engineer or admin access required" in text


async def test_bad_arguments_are_refused_naming_the_field(app: FastAPI, factory: Factory) -> None:
    team = await factory.team(junior="engineer")
    async with agent(app, team["junior"]) as mcp:
        assert "ask" in refusal(await mcp.call_tool("escalate", {"ask": ""}))
        bad_role = {"ask": "x", "transcript": [{"role": "system", "content": "y"}]}
        assert "role" in refusal(await mcp.call_tool("escalate", bad_role))


async def test_a_wait_that_times_out_returns_open_with_progress(
    app: FastAPI, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with agent(app, team["junior"]) as mcp:
        created = ok(await mcp.call_tool("escalate", {"ask": "help"}))
        result = await mcp.call_tool(
            "wait_for_pickup",
            {"handoff_id": created["handoff_id"], "timeout_seconds": 0.01},
            progress_callback=on_progress,
        )
        waited = ok(result)
        reply = ok(
            await mcp.call_tool(
                "wait_for_reply", {"session_id": created["session_id"], "timeout_seconds": 1}
            )
        )
    assert waited["status"] == "open" and waited["claimed_by"] is None
    assert waited["waited_seconds"] >= 1  # 0.01 s is clamped up to one second
    assert progress, "a wait reports progress while it waits"
    assert reply == {"messages": [], "status": "open", "answer": None}


def test_timeouts_are_clamped_to_one_to_fifty_seconds() -> None:
    assert clamp_timeout(None) == 45
    assert clamp_timeout(0) == 1 and clamp_timeout(-5) == 1
    assert clamp_timeout(500) == 50 and clamp_timeout(12.5) == 12.5


async def test_waits_wake_on_the_claim_the_reply_and_the_answer(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    senior = team["senior"]
    async with agent(app, team["junior"]) as mcp:
        created = ok(await mcp.call_tool("escalate", {"ask": "help"}))
        hid, sid = created["handoff_id"], created["session_id"]
        base = f"{API}/ai-sessions/{sid}/handoffs/{hid}"

        pickup = asyncio.create_task(
            mcp.call_tool("wait_for_pickup", {"handoff_id": hid, "timeout_seconds": 50})
        )
        await _until_waiting(app)
        assert (await client.post(f"{base}/claim", headers=senior.headers)).status_code == 200
        claimed = ok(await pickup)
        assert claimed["status"] == "claimed"
        assert claimed["claimed_by"] == {"id": senior.id, "name": senior.name}

        own = ok(await mcp.call_tool("post_message", {"session_id": sid, "content": "I'll wait"}))
        assert own["role"] == "assistant"
        replies = asyncio.create_task(
            mcp.call_tool(
                "wait_for_reply", {"session_id": sid, "after": own["id"], "timeout_seconds": 50}
            )
        )
        await _until_waiting(app)
        written = await client.post(
            f"{API}/ai-sessions/{sid}/messages",
            headers=senior.headers,
            json={"role": "note", "content": "Lock accounts first."},
        )
        assert written.status_code == 201, written.text
        got = ok(await replies)
        assert [m["content"] for m in got["messages"]] == ["Lock accounts first."]
        assert got["messages"][0]["author"] == {"id": senior.id, "name": senior.name}
        assert got["status"] == "claimed"

        answer = asyncio.create_task(
            mcp.call_tool(
                "wait_for_reply",
                {"session_id": sid, "after": got["messages"][0]["id"], "timeout_seconds": 50},
            )
        )
        await _until_waiting(app)
        resolved = await client.post(
            f"{base}/resolve", headers=senior.headers, json={"answer": "Accounts, then ledger."}
        )
        assert resolved.status_code == 200, resolved.text
        final = ok(await answer)
        assert final == {"messages": [], "status": "resolved", "answer": "Accounts, then ledger."}
        after = ok(await mcp.call_tool("wait_for_pickup", {"handoff_id": hid}))
        assert after["status"] == "resolved" and after["answer"] == "Accounts, then ledger."


async def _until_waiting(app: FastAPI) -> None:
    """Until a wait has subscribed to its session (so what follows is what wakes it)."""
    waiters = app.state.ctx.hub.waiters
    async with asyncio.timeout(30):
        while not len(waiters):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
