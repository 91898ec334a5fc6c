"""Idempotency-Key on creating sessions, messages and handoffs: the first answer, once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from lifeline import idempotency
from lifeline.context import AppContext
from lifeline.db import utcnow
from tests.support.factories import Factory, new_session


def _key(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


async def test_a_retried_escalation_returns_the_first_answer_and_creates_one(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    junior = team["junior"]
    session = await new_session(client, junior)
    url = f"/api/v1/ai-sessions/{session['id']}/handoff"
    body = {"intent": "escalate", "note": "deadlock"}

    first = await client.post(url, headers=_key(junior.headers, "esc-1"), json=body)
    again = await client.post(url, headers=_key(junior.headers, "esc-1"), json=body)
    assert first.status_code == again.status_code == 201, again.text
    assert again.json() == first.json()
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"

    history = await client.get(
        f"/api/v1/ai-sessions/{session['id']}/handoffs", headers=junior.headers
    )
    assert [h["id"] for h in history.json()["items"]] == [first.json()["id"]]
    # Without the key the same request is a new one: the open escalation refuses it.
    fresh = await client.post(url, headers=junior.headers, json=body)
    assert fresh.status_code == 409


async def test_sessions_and_messages_are_created_once_per_key(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    junior = team["junior"]
    created = [
        await client.post(
            "/api/v1/ai-sessions", headers=_key(junior.headers, "s-1"), json={"title": "Flaky CI"}
        )
        for _ in range(3)
    ]
    assert {r.status_code for r in created} == {201}
    assert len({r.json()["id"] for r in created}) == 1
    listed = await client.get("/api/v1/ai-sessions", headers=junior.headers)
    assert [s["id"] for s in listed.json()["items"]] == [created[0].json()["id"]]

    url = f"/api/v1/ai-sessions/{created[0].json()['id']}/messages"
    messages = [
        await client.post(url, headers=_key(junior.headers, "m-1"), json={"content": "trace"})
        for _ in range(2)
    ]
    assert messages[0].json() == messages[1].json()
    transcript = await client.get(url, headers=junior.headers)
    assert [m["content"] for m in transcript.json()["items"]] == ["trace"]


async def test_concurrent_double_clicks_create_one_handoff(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    junior = team["junior"]
    session = await new_session(client, junior)
    url = f"/api/v1/ai-sessions/{session['id']}/handoff"

    responses = await asyncio.gather(
        *[
            client.post(
                url, headers=_key(junior.headers, "click"), json={"intent": "escalate", "note": ""}
            )
            for _ in range(8)
        ]
    )
    assert [r.status_code for r in responses] == [201] * 8, [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 7
    history = await client.get(
        f"/api/v1/ai-sessions/{session['id']}/handoffs", headers=junior.headers
    )
    assert len(history.json()["items"]) == 1


async def test_a_key_reused_on_another_path_is_a_422_and_creates_nothing(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    junior = team["junior"]
    first = await client.post(
        "/api/v1/ai-sessions", headers=_key(junior.headers, "k"), json={"title": "one"}
    )
    assert first.status_code == 201
    reused = await client.post(
        f"/api/v1/ai-sessions/{first.json()['id']}/messages",
        headers=_key(junior.headers, "k"),
        json={"content": "should not land"},
    )
    assert reused.status_code == 422
    assert "Idempotency-Key" in reused.json()["detail"]
    transcript = await client.get(
        f"/api/v1/ai-sessions/{first.json()['id']}/messages", headers=junior.headers
    )
    assert transcript.json()["items"] == []


async def test_a_key_reused_with_another_body_is_a_422_and_creates_nothing(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    junior = team["junior"]
    first = await client.post(
        "/api/v1/ai-sessions", headers=_key(junior.headers, "k"), json={"title": "one"}
    )
    assert first.status_code == 201
    # The same request written differently (key order, spacing) is the same request.
    same = await client.post(
        "/api/v1/ai-sessions",
        headers={**_key(junior.headers, "k"), "Content-Type": "application/json"},
        content=b'{ "messages": [],   "title": "one" }',
    )
    assert same.status_code == 201 and same.json() == first.json()
    other = await client.post(
        "/api/v1/ai-sessions", headers=_key(junior.headers, "k"), json={"title": "two"}
    )
    assert other.status_code == 422, other.text
    assert other.json()["detail"].startswith("Idempotency-Key: already used with a different")
    mine = await client.get("/api/v1/ai-sessions", headers=junior.headers)
    assert [s["title"] for s in mine.json()["items"]] == ["one"]


async def test_a_failed_request_stores_nothing_under_its_key(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    junior = team["junior"]
    session = await new_session(client, junior)
    url = f"/api/v1/ai-sessions/{session['id']}/messages"
    missing = await client.post(
        "/api/v1/ai-sessions/00000000-0000-0000-0000-000000000000/messages",
        headers=_key(junior.headers, "retry-me"),
        json={"content": "lost"},
    )
    assert missing.status_code == 404
    # The rolled-back attempt left no record: the key is free for the corrected request.
    ok = await client.post(url, headers=_key(junior.headers, "retry-me"), json={"content": "ok"})
    assert ok.status_code == 201, ok.text
    assert "Idempotent-Replayed" not in ok.headers


async def test_keys_belong_to_their_user_and_bad_keys_are_422(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(a="engineer", b="engineer")
    first = await client.post(
        "/api/v1/ai-sessions", headers=_key(team["a"].headers, "same"), json={"title": "a"}
    )
    second = await client.post(
        "/api/v1/ai-sessions", headers=_key(team["b"].headers, "same"), json={"title": "b"}
    )
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]

    for bad in ("x" * 201, "has space"):
        refused = await client.post(
            "/api/v1/ai-sessions", headers=_key(team["a"].headers, bad), json={"title": "c"}
        )
        assert refused.status_code == 422
        assert refused.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_answers_are_forgotten_after_a_day(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(junior="engineer")
    headers = _key(team["junior"].headers, "daily")
    first = await client.post("/api/v1/ai-sessions", headers=headers, json={"title": "one"})
    async with ctx.sessionmaker() as db, db.begin():
        assert await idempotency.purge_expired(db=db) == 0
        later = utcnow() + idempotency.KEY_LIFETIME + timedelta(minutes=1)
        assert await idempotency.purge_expired(db=db, now=later) == 1
    again = await client.post("/api/v1/ai-sessions", headers=headers, json={"title": "one"})
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
