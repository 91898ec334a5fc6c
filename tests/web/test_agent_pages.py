"""The pages and agents: the brief in the Escalate form, on the session page and the queue card;
Reply; an answer on Resolve; "via Claude Code on behalf of …"."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.agents.conftest import agent
from tests.agents.support import ok
from tests.support.factories import Factory, new_session
from tests.web.conftest import BrowserFactory

API = "/api/v1"


async def test_escalate_form_takes_a_brief_shown_on_the_page_and_the_queue(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"], title="Deadlock")
    junior = await browser(team["junior"])
    page = await junior.page(f"/sessions/{session['id']}")
    for label in ("What you tried", "The error", "Repository", "Branch", "Files (one a line)"):
        assert label in page.text
    posted = await junior.post(
        f"/sessions/{session['id']}/handoff",
        {
            "intent": "escalate",
            "note": "Which lock order?",
            "tried": "Swapped the UPDATEs",
            "error": "deadlock detected",
            "repo": "acme/payments",
            "files": "migrate.py\nledger.py\n",
        },
    )
    assert posted.status_code == 303, posted.text
    history = await client.get(
        f"{API}/ai-sessions/{session['id']}/handoffs", headers=team["junior"].headers
    )
    brief = history.json()["items"][0]["brief"]
    assert brief["ask"] == "Which lock order?" and brief["context"]["files"] == [
        "migrate.py",
        "ledger.py",
    ]

    senior = await browser(team["senior"])
    for url in ("/", f"/sessions/{session['id']}"):
        html = (await senior.page(url)).text
        assert "Swapped the UPDATEs" in html and "deadlock detected" in html
        assert "acme/payments" in html and "ledger.py" in html


async def test_only_the_note_is_needed_and_extras_without_it_are_refused(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    junior = await browser(team["junior"])
    refused = await junior.post(
        f"/sessions/{session['id']}/handoff", {"intent": "escalate", "tried": "lots"}
    )
    assert refused.status_code == 303
    history = await client.get(
        f"{API}/ai-sessions/{session['id']}/handoffs", headers=team["junior"].headers
    )
    assert history.json()["items"] == []
    plain = await junior.post(
        f"/sessions/{session['id']}/handoff", {"intent": "escalate", "note": "help"}
    )
    assert plain.status_code == 303
    history = await client.get(
        f"{API}/ai-sessions/{session['id']}/handoffs", headers=team["junior"].headers
    )
    assert history.json()["items"][0]["brief"] is None


async def test_the_senior_replies_and_resolves_with_an_answer_the_agent_receives(
    app: FastAPI, browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    async with agent(app, team["junior"]) as mcp:
        created = ok(await mcp.call_tool("escalate", {"ask": "Which lock order?"}))
    sid, hid = created["session_id"], created["handoff_id"]
    senior = await browser(team["senior"])
    page = (await senior.page(f"/sessions/{sid}")).text
    assert f"on behalf of {team['junior'].name}" in page
    assert (await senior.post(f"/sessions/{sid}/handoffs/{hid}/claim")).status_code == 303
    page = (await senior.page(f"/sessions/{sid}")).text
    assert f"Reply to {team['junior'].name}" in page and ">Reply</button>" in page
    assert 'name="answer"' in page

    replied = await senior.post(f"/sessions/{sid}/messages", {"content": "Accounts first."})
    assert replied.status_code == 303
    resolved = await senior.post(
        f"/sessions/{sid}/handoffs/{hid}/resolve", {"answer": "Accounts, then ledger."}
    )
    assert resolved.status_code == 303
    async with agent(app, team["junior"]) as mcp:
        replies = ok(
            await mcp.call_tool(
                "wait_for_reply", {"session_id": sid, "after": None, "timeout_seconds": 1}
            )
        )
        view = ok(await mcp.call_tool("get_handoff", {"handoff_id": hid}))
    assert view["status"] == "resolved" and view["answer"] == "Accounts, then ledger."
    assert replies["status"] == "resolved" and replies["answer"] == "Accounts, then ledger."
    page = (await senior.page(f"/sessions/{sid}")).text
    assert "Accounts, then ledger." in page and "Accounts first." in page
