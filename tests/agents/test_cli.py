"""``lifeline mcp`` (stdio), ``lifeline hook claude-code`` and ``lifeline escalate`` as processes
against a live ``lifeline serve``: they reach it over HTTP only."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.types import Implementation
from sqlalchemy.ext.asyncio import AsyncEngine

from lifeline.db import create_engine, create_sessionmaker
from tests.agents.support import ok
from tests.realtime.clients import API
from tests.support.factories import Factory, Person
from tests.support.live import live_server

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parent / "fixtures" / "claude_code_transcript.jsonl"
CC_SESSION = "6f1c2b9e-3d4a-4e8f-9a10-2b3c4d5e6f70"


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def factory(engine: AsyncEngine) -> Factory:
    return Factory(create_sessionmaker(engine))


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[str]:
    with live_server(database_url, tmp_path, LIFELINE_AGENT_PROGRESS_SECONDS="0.5") as base:
        yield base


def cli_env(person: Person, base: str) -> dict[str, str]:
    """No database settings at all: the commands must not need one."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIFELINE_")}
    env.update(LIFELINE_TOKEN=person.token, LIFELINE_URL=base, LIFELINE_LOG_JSON="false")
    return env


async def run_cli(args: list[str], env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lifeline.cli",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def queue(base: str, person: Person) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.get(f"{API}/ai-sessions/queue", headers=person.headers)
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_stdio_mcp_forwards_the_tools_to_the_server(server: str, factory: Factory) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lifeline.cli", "mcp", "--url", server],
        env=cli_env(team["junior"], server),
    )
    progress: list[float] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with Client(
        params, client_info=Implementation(name="cursor", title="Cursor", version="1.7")
    ) as agent:
        names = {tool.name for tool in (await agent.list_tools()).tools}
        assert names == {
            "escalate",
            "wait_for_pickup",
            "wait_for_reply",
            "get_handoff",
            "post_message",
        }
        created = ok(await agent.call_tool("escalate", {"ask": "Which lock order?"}))
        waited = ok(
            await agent.call_tool(
                "wait_for_pickup",
                {"handoff_id": created["handoff_id"], "timeout_seconds": 1},
                progress_callback=on_progress,
            )
        )
        refused = await agent.call_tool("get_handoff", {"handoff_id": "nope"})
    assert waited["status"] == "open" and progress
    assert refused.is_error and "Handoff not found" in refused.content[0].text  # type: ignore[union-attr]
    [item] = await queue(server, team["senior"])
    assert item["id"] == created["handoff_id"]
    async with httpx.AsyncClient(base_url=server) as http:
        session = await http.get(
            f"{API}/ai-sessions/{created['session_id']}", headers=team["senior"].headers
        )
    assert session.json()["source"] == "mcp" and session.json()["client_name"] == "Cursor"


def hook_event(**overrides: Any) -> bytes:
    event = {
        "session_id": CC_SESSION,
        "transcript_path": str(FIXTURE),
        "cwd": "/home/jamie/src/payments",
        "hook_event_name": "Notification",
        "message": "Claude needs your input to continue",
    }
    event.update(overrides)
    return json.dumps(event).encode()


async def test_the_claude_code_hook_escalates_its_conversation_once(
    server: str, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    env = cli_env(team["junior"], server)
    code, out, err = await run_cli(["hook", "claude-code"], env, hook_event())
    assert code == 0, err
    assert out.startswith("Escalated: ")
    again_code, again, _ = await run_cli(["hook", "claude-code"], env, hook_event())
    assert again_code == 0 and again.startswith("Already escalated (open)")

    [item] = await queue(server, team["senior"])
    assert item["brief"]["ask"].startswith("Claude needs your input to continue")
    assert "I need a human to decide" in item["brief"]["ask"]
    context = item["brief"]["context"]
    assert context["repo"] == "/home/jamie/src/payments" and context["branch"] == "fix/deadlock"
    assert item["session"]["title"].startswith("The payments migration deadlocks on CI")
    async with httpx.AsyncClient(base_url=server) as http:
        sid = item["session"]["id"]
        session = (
            await http.get(f"{API}/ai-sessions/{sid}", headers=team["senior"].headers)
        ).json()
        messages = await http.get(
            f"{API}/ai-sessions/{sid}/messages", headers=team["senior"].headers
        )
    assert session["source"] == "claude-code" and session["external_id"] == CC_SESSION
    roles = [m["role"] for m in messages.json()["items"]]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]

    # Other hook events are none of its business unless asked for.
    code, out, _ = await run_cli(
        ["hook", "claude-code"], env, hook_event(hook_event_name="Stop", session_id="other")
    )
    assert code == 0 and out == ""
    assert len(await queue(server, team["senior"])) == 1


async def test_the_hook_refuses_bad_input_with_one_line_and_escalates_nothing(
    server: str, factory: Factory, tmp_path: Path
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    env = cli_env(team["junior"], server)
    unreadable = tmp_path / "bad.jsonl"
    unreadable.write_text("{not json\n")
    cases = [
        (b"this is not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (json.dumps({"session_id": "x"}).encode(), "lacks transcript_path, hook_event_name"),
        (hook_event(transcript_path=str(tmp_path / "missing.jsonl")), "transcript not found"),
        (hook_event(transcript_path=str(unreadable)), "line 1 is not JSON"),
    ]
    for stdin, says in cases:
        code, out, err = await run_cli(["hook", "claude-code"], env, stdin)
        assert code == 2, (stdin, out, err)
        assert len(err.strip().splitlines()) == 1 and says in err, err
    no_token = {k: v for k, v in env.items() if k != "LIFELINE_TOKEN"}
    code, _, err = await run_cli(["hook", "claude-code"], no_token, hook_event())
    assert code == 2 and "LIFELINE_TOKEN" in err
    assert await queue(server, team["senior"]) == []


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    while line := await asyncio.wait_for(stream.readline(), 60):
        yield json.loads(line)


async def test_escalate_waits_for_the_pickup_and_the_answer(server: str, factory: Factory) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    senior = team["senior"]
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "lifeline.cli", "escalate", "--title", "Deadlock"),
        *("--ask", "Which lock order?", "--tried", "swapped them", "--transcript", str(FIXTURE)),
        *("--wait", "--json"),
        env=cli_env(team["junior"], server),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    events = _lines(proc.stdout)
    escalated = await anext(events)
    assert escalated["event"] == "escalated" and escalated["created"] is True
    base = f"{API}/ai-sessions/{escalated['session_id']}/handoffs/{escalated['handoff_id']}"
    async with httpx.AsyncClient(base_url=server) as http:
        assert (await http.post(f"{base}/claim", headers=senior.headers)).status_code == 200
        claimed = await anext(events)
        assert claimed["event"] == "claimed" and claimed["claimed_by"]["id"] == senior.id
        reply = await http.post(
            f"{API}/ai-sessions/{escalated['session_id']}/messages",
            headers=senior.headers,
            json={"role": "note", "content": "Accounts first."},
        )
        assert reply.status_code == 201
        message = await anext(events)
        assert message["event"] == "message" and message["content"] == "Accounts first."
        resolved = await http.post(
            f"{base}/resolve", headers=senior.headers, json={"answer": "Accounts, then ledger."}
        )
        assert resolved.status_code == 200
    final = await anext(events)
    assert final["event"] == "resolved" and final["answer"] == "Accounts, then ledger."
    assert await asyncio.wait_for(proc.wait(), 60) == 0


async def test_escalate_exits_3_when_the_escalation_is_withdrawn(
    server: str, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    junior = team["junior"]
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "lifeline.cli", "escalate", "--title", "T", "--ask", "A"),
        *("--wait", "--json"),
        env=cli_env(junior, server),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    escalated = await anext(_lines(proc.stdout))
    async with httpx.AsyncClient(base_url=server) as http:
        cancel = await http.post(
            f"{API}/ai-sessions/{escalated['session_id']}/handoffs/{escalated['handoff_id']}/cancel",
            headers=junior.headers,
        )
        assert cancel.status_code == 200, cancel.text
    assert await asyncio.wait_for(proc.wait(), 60) == 3
