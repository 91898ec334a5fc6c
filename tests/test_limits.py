"""Input limits: note and message length, page size — 422 naming the field, nothing written."""

from __future__ import annotations

import httpx
import pytest

from lifeline.ai_sessions.schemas import MAX_MESSAGE_LENGTH
from lifeline.context import AppContext
from lifeline.handoffs.schemas import MAX_NOTE_LENGTH
from tests.support.factories import Factory, new_session


def _fields(response: httpx.Response) -> set[str]:
    return {str(error["loc"][-1]) for error in response.json()["detail"]}


async def test_overlong_note_message_and_page_size_are_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    junior = team["junior"]
    session = await new_session(client, junior)
    sid = session["id"]

    note = await client.post(
        f"/api/v1/ai-sessions/{sid}/handoff",
        headers=junior.headers,
        json={"intent": "escalate", "note": "n" * (MAX_NOTE_LENGTH + 1)},
    )
    assert note.status_code == 422 and _fields(note) == {"note"}
    history = await client.get(f"/api/v1/ai-sessions/{sid}/handoffs", headers=junior.headers)
    assert history.json()["items"] == []

    message = await client.post(
        f"/api/v1/ai-sessions/{sid}/messages",
        headers=junior.headers,
        json={"content": "m" * (MAX_MESSAGE_LENGTH + 1)},
    )
    assert message.status_code == 422 and _fields(message) == {"content"}
    transcript = await client.get(f"/api/v1/ai-sessions/{sid}/messages", headers=junior.headers)
    assert len(transcript.json()["items"]) == 2

    for path in ("/api/v1/ai-sessions", "/api/v1/ai-sessions/queue", "/api/v1/users"):
        too_many = await client.get(path, params={"limit": 101}, headers=junior.headers)
        assert too_many.status_code == 422 and _fields(too_many) == {"limit"}, path
        most = await client.get(path, params={"limit": 100}, headers=junior.headers)
        assert most.status_code == 200, path


async def test_text_no_database_can_store_is_a_422_naming_the_field(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    junior = team["junior"]
    nul = await client.post("/api/v1/ai-sessions", headers=junior.headers, json={"title": "a\x00b"})
    assert nul.status_code == 422 and _fields(nul) == {"title"}
    surrogate = await client.post(
        "/api/v1/ai-sessions",
        headers={**junior.headers, "Content-Type": "application/json"},
        content=b'{"title": "ok", "messages": [{"content": "lone \\ud800 half"}]}',
    )
    assert surrogate.status_code == 422 and _fields(surrogate) == {"content"}
    session = await new_session(client, junior)
    note = await client.post(
        f"/api/v1/ai-sessions/{session['id']}/handoff",
        headers=junior.headers,
        json={"intent": "escalate", "note": "\x00"},
    )
    assert note.status_code == 422 and _fields(note) == {"note"}
    listed = await client.get("/api/v1/ai-sessions", headers=junior.headers)
    assert [s["id"] for s in listed.json()["items"]] == [session["id"]]


async def test_a_nul_in_the_url_is_a_400(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team()
    path = await client.get("/api/v1/ai-sessions/a%00b", headers=team.owner.headers)
    assert path.status_code == 400
    assert path.json() == {"detail": "URL must not contain NUL characters"}
    query = await client.get(
        "/api/v1/ai-sessions", params={"status": "a\x00"}, headers=team.owner.headers
    )
    assert query.status_code == 400


async def test_the_page_size_limit_is_the_configured_one(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ctx, "settings", ctx.settings.model_copy(update={"max_page_size": 10}))
    team = await factory.team(junior="engineer")
    headers = team["junior"].headers
    too_many = await client.get("/api/v1/ai-sessions", params={"limit": 11}, headers=headers)
    assert too_many.status_code == 422 and _fields(too_many) == {"limit"}
    assert "10" in too_many.json()["detail"][0]["msg"]
    most = await client.get("/api/v1/ai-sessions", params={"limit": 10}, headers=headers)
    assert most.status_code == 200
