"""A structured brief on an escalation, an answer on resolve, and where a session came from."""

from __future__ import annotations

import httpx

from tests.support.factories import Factory, new_session

API = "/api/v1"

BRIEF = {
    "ask": "Which lock order does the payments migration need?",
    "tried": "Reordered the two UPDATEs; still deadlocks on CI.",
    "error": "deadlock detected",
    "context": {
        "repo": "git@example.com:acme/payments.git",
        "branch": "fix/deadlock",
        "commit": "4f2a9c1",
        "files": ["migrations/0042.py"],
        "url": "https://ci.example.com/run/7",
    },
}


async def test_an_escalation_carries_its_brief_and_the_note_is_its_ask(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    response = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["junior"].headers,
        json={"intent": "escalate", "brief": BRIEF},
    )
    assert response.status_code == 201, response.text
    handoff = response.json()
    assert handoff["brief"] == BRIEF
    assert handoff["note"] == BRIEF["ask"]
    assert handoff["answer"] is None

    queue = await client.get(f"{API}/ai-sessions/queue", headers=team["senior"].headers)
    assert queue.json()["items"][0]["brief"] == BRIEF


async def test_a_bad_brief_is_a_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    for brief, field in (
        ({"tried": "x"}, "ask"),
        ({"ask": ""}, "ask"),
        ({"ask": "x", "context": {"files": "a.py"}}, "files"),
        ({"ask": "x", "context": {"account_id": "y"}}, "account_id"),
    ):
        response = await client.post(
            f"{API}/ai-sessions/{session['id']}/handoff",
            headers=team["junior"].headers,
            json={"intent": "escalate", "brief": brief},
        )
        assert response.status_code == 422, response.text
        assert field in {str(part) for part in response.json()["detail"][0]["loc"]}
    history = await client.get(
        f"{API}/ai-sessions/{session['id']}/handoffs", headers=team["junior"].headers
    )
    assert history.json()["items"] == []


async def test_resolve_takes_an_optional_answer(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    for body, expected in (
        ({"answer": "Lock accounts before ledger."}, "Lock accounts before ledger."),
        (None, None),
    ):
        session = await new_session(client, team["junior"])
        created = await client.post(
            f"{API}/ai-sessions/{session['id']}/handoff",
            headers=team["junior"].headers,
            json={"intent": "escalate", "note": "help"},
        )
        hid = created.json()["id"]
        base = f"{API}/ai-sessions/{session['id']}/handoffs/{hid}"
        claimed = await client.post(f"{base}/claim", headers=team["senior"].headers)
        assert claimed.status_code == 200, claimed.text
        if body is None:
            resolved = await client.post(f"{base}/resolve", headers=team["senior"].headers)
        else:
            resolved = await client.post(
                f"{base}/resolve", headers=team["senior"].headers, json=body
            )
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["status"] == "resolved"
        assert resolved.json()["answer"] == expected


async def test_resolve_refuses_an_oversized_or_unknown_field(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    created = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["junior"].headers,
        json={"intent": "escalate", "note": "help"},
    )
    base = f"{API}/ai-sessions/{session['id']}/handoffs/{created.json()['id']}"
    await client.post(f"{base}/claim", headers=team["senior"].headers)
    for body, field in (({"answer": "x" * 20_001}, "answer"), ({"status": "open"}, "status")):
        response = await client.post(f"{base}/resolve", headers=team["senior"].headers, json=body)
        assert response.status_code == 422, response.text
        assert field in {str(part) for part in response.json()["detail"][0]["loc"]}
    handoffs = await client.get(
        f"{API}/ai-sessions/{session['id']}/handoffs", headers=team["senior"].headers
    )
    assert handoffs.json()["items"][0]["status"] == "claimed"


async def test_a_session_records_its_source_and_one_external_id_is_one_session(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", other="engineer")
    body = {"title": "Hook", "source": "claude-code", "external_id": "cc-123"}
    first = await client.post(f"{API}/ai-sessions", headers=team["junior"].headers, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["source"] == "claude-code"
    assert first.json()["external_id"] == "cc-123"
    again = await client.post(f"{API}/ai-sessions", headers=team["junior"].headers, json=body)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"]

    # Another source, or another account, is another conversation.
    cli = await client.post(
        f"{API}/ai-sessions", headers=team["junior"].headers, json={**body, "source": "cli"}
    )
    assert cli.status_code == 201 and cli.json()["id"] != first.json()["id"]
    stranger = (await factory.team(x="engineer"))["x"]
    theirs = await client.post(f"{API}/ai-sessions", headers=stranger.headers, json=body)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]

    # Someone who can't see the session gets a conflict, not the session.
    hidden = await client.post(f"{API}/ai-sessions", headers=team["other"].headers, json=body)
    assert hidden.status_code == 409, hidden.text

    plain = await client.post(
        f"{API}/ai-sessions", headers=team["junior"].headers, json={"title": "x"}
    )
    assert plain.json()["source"] == "api" and plain.json()["external_id"] is None
    for bad, field in (
        ({"source": "mcp"}, "source"),
        ({"source": "web"}, "source"),
        ({"external_id": ""}, "external_id"),
    ):
        response = await client.post(
            f"{API}/ai-sessions", headers=team["junior"].headers, json={"title": "x", **bad}
        )
        assert response.status_code == 422, response.text
        assert field in {str(part) for part in response.json()["detail"][0]["loc"]}
