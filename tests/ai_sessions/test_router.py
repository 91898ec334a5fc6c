"""AI sessions and transcripts over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.factories import Factory, Person, escalate, new_session

API = "/api/v1"


async def listed(client: httpx.AsyncClient, person: Person, **params: Any) -> list[str]:
    response = await client.get(f"{API}/ai-sessions", params=params, headers=person.headers)
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["items"]]


async def test_create_and_read_a_session_with_its_transcript(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer")
    messages = [
        {"role": "user", "content": "Why does the job hang?"},
        {"role": "assistant", "content": "It waits on a lock."},
        {"role": "system", "content": "context: payments"},
    ]
    session = await new_session(client, team["eng"], title="Hanging job", messages=messages)
    assert set(session) == {
        "id",
        "title",
        "status",
        "created_by",
        "assigned_to",
        "created_at",
        "updated_at",
        "source",
        "client_name",
        "external_id",
    }
    assert session["source"] == "api" and session["external_id"] is None
    assert session["status"] == "active" and session["created_by"] == team["eng"].id
    assert session["assigned_to"] is None and session["title"] == "Hanging job"
    assert session["created_at"].endswith(("Z", "+00:00"))

    read = await client.get(f"{API}/ai-sessions/{session['id']}", headers=team["eng"].headers)
    assert read.json() == session
    transcript = await client.get(
        f"{API}/ai-sessions/{session['id']}/messages", headers=team["eng"].headers
    )
    items = transcript.json()["items"]
    assert [(m["role"], m["content"]) for m in items] == [
        (m["role"], m["content"]) for m in messages
    ]
    assert all(m["author_user_id"] == team["eng"].id for m in items)


async def test_append_to_the_transcript(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer", peer="engineer", adm="admin")
    session = await new_session(client, team["eng"])

    added = await client.post(
        f"{API}/ai-sessions/{session['id']}/messages",
        headers=team["eng"].headers,
        json={"role": "note", "content": "tried restarting"},
    )

    assert added.status_code == 201, added.text
    assert added.json()["role"] == "note" and added.json()["session_id"] == session["id"]
    read = await client.get(f"{API}/ai-sessions/{session['id']}", headers=team["eng"].headers)
    assert read.json()["updated_at"] >= session["updated_at"]
    # An admin reads it but is not its author; a peer can't see it before escalation.
    by_admin = await client.post(
        f"{API}/ai-sessions/{session['id']}/messages",
        headers=team["adm"].headers,
        json={"content": "x"},
    )
    assert by_admin.status_code == 403
    by_peer = await client.post(
        f"{API}/ai-sessions/{session['id']}/messages",
        headers=team["peer"].headers,
        json={"content": "x"},
    )
    assert by_peer.status_code == 404
    transcript = await client.get(
        f"{API}/ai-sessions/{session['id']}/messages", headers=team["adm"].headers
    )
    assert [m["content"] for m in transcript.json()["items"]][-1] == "tried restarting"
    assert len(transcript.json()["items"]) == 3


async def test_visibility_follows_escalation(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer", peer="engineer", vic="viewer", adm="admin")
    session = await new_session(client, team["eng"])
    path = f"{API}/ai-sessions/{session['id']}"

    for person in (team["peer"], team["vic"]):
        assert (await client.get(path, headers=person.headers)).status_code == 404
        assert session["id"] not in await listed(client, person)
    for person in (team["eng"], team["adm"], team.owner):
        assert (await client.get(path, headers=person.headers)).status_code == 200
        assert session["id"] in await listed(client, person)

    handoff = await escalate(client, team["eng"], session["id"])
    for person in (team["peer"], team["vic"]):
        assert (await client.get(path, headers=person.headers)).status_code == 200
        assert session["id"] in await listed(client, person)
        transcript = await client.get(f"{path}/messages", headers=person.headers)
        assert len(transcript.json()["items"]) == 2
    # The viewer reads but never writes.
    write = await client.post(
        f"{path}/messages", headers=team["vic"].headers, json={"content": "x"}
    )
    assert write.status_code == 403
    # The claimer becomes the assignee and may write to the transcript.
    claim = await client.post(
        f"{path}/handoffs/{handoff['id']}/claim", headers=team["peer"].headers
    )
    assert claim.status_code == 200
    reply = await client.post(
        f"{path}/messages",
        headers=team["peer"].headers,
        json={"role": "note", "content": "on it"},
    )
    assert reply.status_code == 201


async def test_parking_does_not_share_a_session(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer", peer="engineer")
    session = await new_session(client, team["eng"])
    await escalate(client, team["eng"], session["id"], intent="park")
    response = await client.get(f"{API}/ai-sessions/{session['id']}", headers=team["peer"].headers)
    assert response.status_code == 404
    assert session["id"] in await listed(client, team["eng"], status="parked")


async def test_list_filters_and_pagination(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer", peer="engineer")
    made = [(await new_session(client, team["eng"], title=f"s{n}"))["id"] for n in range(5)]
    theirs = await new_session(client, team["peer"], title="peer's")
    await escalate(client, team["peer"], theirs["id"])
    await escalate(client, team["eng"], made[1])

    # Newest first, across pages.
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(
            f"{API}/ai-sessions", params=params, headers=team["eng"].headers
        )
        body = response.json()
        assert len(body["items"]) <= 2
        seen += [s["id"] for s in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [theirs["id"], *reversed(made)]

    assert await listed(client, team["eng"], mine="true") == list(reversed(made))
    assert await listed(client, team["eng"], status="escalated") == [theirs["id"], made[1]]
    assert await listed(client, team["eng"], status="escalated", mine="true") == [made[1]]
    bad = await client.get(
        f"{API}/ai-sessions", params={"status": "sleeping"}, headers=team["eng"].headers
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "status"]


async def test_transcript_pages_oldest_first(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer")
    messages = [{"role": "user", "content": f"line {n}"} for n in range(7)]
    session = await new_session(client, team["eng"], messages=messages)
    contents: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(
            f"{API}/ai-sessions/{session['id']}/messages",
            params=params,
            headers=team["eng"].headers,
        )
        contents += [m["content"] for m in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert contents == [m["content"] for m in messages]


async def test_unknown_session_is_404(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer")
    for suffix in ("", "/messages", "/handoffs"):
        response = await client.get(
            f"{API}/ai-sessions/00000000-0000-4000-8000-000000000000{suffix}",
            headers=team["eng"].headers,
        )
        assert response.status_code == 404
        assert response.json() == {"detail": "AI session not found"}


async def _status(client: httpx.AsyncClient, person: Person, session_id: str) -> str:
    response = await client.get(f"{API}/ai-sessions/{session_id}", headers=person.headers)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


async def _listed(client: httpx.AsyncClient, person: Person, status: str) -> list[str]:
    response = await client.get(
        f"{API}/ai-sessions", headers=person.headers, params={"status": status}
    )
    assert response.status_code == 200, response.text
    return [s["id"] for s in response.json()["items"]]


async def test_a_park_tells_nobody_else_not_even_through_the_sessions_status(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", vic="viewer")
    junior = team["junior"]
    # Escalated once and resolved: every member of the account can read it now.
    session = await new_session(client, junior)
    handoff = await escalate(client, junior, session["id"])
    path = f"{API}/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
    for step in ("claim", "resolve"):
        done = await client.post(f"{path}/{step}", headers=team["senior"].headers)
        assert done.status_code == 200, done.text
    private = await new_session(client, junior, title="not escalated")
    for target in (session, private):
        await escalate(client, junior, target["id"], intent="park")

    assert await _status(client, junior, session["id"]) == "parked"
    assert set(await _listed(client, junior, "parked")) == {session["id"], private["id"]}
    for other in (team["senior"], team["vic"], team.owner):
        assert await _status(client, other, session["id"]) == "resolved"
        assert await _listed(client, other, "parked") == []
        assert session["id"] in await _listed(client, other, "resolved")
    # The owner reads every session of the account: the unescalated one stays "active".
    assert await _status(client, team.owner, private["id"]) == "active"
    assert private["id"] in await _listed(client, team.owner, "active")
    assert private["id"] not in await _listed(client, junior, "active")
