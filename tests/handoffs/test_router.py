"""The hand-off workflow over the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx

from tests.support.factories import Factory, escalate, new_session


async def test_escalate_then_pick_up_assigns_the_claimer(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"], note="deadlock on CI")
    assert handoff["status"] == "open" and handoff["intent"] == "escalate"

    queue = (await client.get("/api/v1/ai-sessions/queue", headers=team["senior"].headers)).json()
    assert [item["id"] for item in queue["items"]] == [handoff["id"]]
    item = queue["items"][0]
    assert item["session"] == {"id": session["id"], "title": session["title"]}
    assert item["escalator"] == {"id": team["junior"].id, "name": team["junior"].name}
    assert item["note"] == "deadlock on CI" and item["age_seconds"] >= 0

    claim = await client.post(
        f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim",
        headers=team["senior"].headers,
    )
    assert claim.status_code == 200, claim.text
    body = claim.json()
    assert body["status"] == "claimed"
    assert body["claimed_by"] == team["senior"].id and body["claimed_at"] is not None

    read = await client.get(f"/api/v1/ai-sessions/{session['id']}", headers=team["senior"].headers)
    assert read.json()["assigned_to"] == team["senior"].id
    assert read.json()["status"] == "claimed"
    empty = await client.get("/api/v1/ai-sessions/queue", headers=team["senior"].headers)
    assert empty.json()["items"] == []
