"""The team queue: GET /ai-sessions/queue, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import update

from lifeline.context import AppContext
from lifeline.handoffs.models import Handoff
from tests.support.factories import Factory, Person, escalate, new_session

QUEUE = "/api/v1/ai-sessions/queue"


async def pages(
    client: httpx.AsyncClient, person: Person, *, limit: int, **params: Any
) -> list[list[str]]:
    """Every page of the queue, following next_cursor (bounded)."""
    out: list[list[str]] = []
    cursor: str | None = None
    for _ in range(50):
        query: dict[str, Any] = {"limit": limit, **params}
        if cursor:
            query["cursor"] = cursor
        response = await client.get(QUEUE, params=query, headers=person.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        out.append([item["id"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the queue never ended")


async def test_queue_is_never_read_as_a_session_id(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    response = await client.get(QUEUE, headers=team["junior"].headers)
    assert response.status_code == 200
    assert response.json() == {"items": [], "next_cursor": None}
    # The session routes beneath it keep working, and "queue" is no session.
    messages = await client.get(f"{QUEUE}/messages", headers=team["junior"].headers)
    assert messages.status_code == 404


async def test_queue_needs_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get(QUEUE)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_queue_lists_open_escalations_of_the_account_oldest_first(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(a="engineer", b="engineer", senior="admin", vic="viewer")
    other = await factory.team(x="engineer")
    made = []
    for n, person in enumerate([team["a"], team["b"], team["a"]]):
        session = await new_session(client, person, title=f"problem {n}")
        made.append((session, await escalate(client, person, session["id"], note=f"n{n}")))
    # Noise that must not show: a park, a cancelled escalation, another account's escalation.
    parked = await new_session(client, team["a"], title="parked")
    await escalate(client, team["a"], parked["id"], intent="park")
    withdrawn = await new_session(client, team["b"], title="withdrawn")
    gone = await escalate(client, team["b"], withdrawn["id"])
    cancel = await client.post(
        f"/api/v1/ai-sessions/{withdrawn['id']}/handoffs/{gone['id']}/cancel",
        headers=team["b"].headers,
    )
    assert cancel.status_code == 200
    foreign = await new_session(client, other["x"])
    foreign_handoff = await escalate(client, other["x"], foreign["id"])

    expected = [h["id"] for _s, h in made]
    for person in (team["a"], team["senior"], team["vic"], team.owner):
        response = await client.get(QUEUE, headers=person.headers)
        assert [i["id"] for i in response.json()["items"]] == expected
    body = (await client.get(QUEUE, headers=team["vic"].headers)).json()
    ages = [item["age_seconds"] for item in body["items"]]
    assert ages == sorted(ages, reverse=True)
    for (session, handoff), item in zip(made, body["items"], strict=True):
        assert item["session"] == {"id": session["id"], "title": session["title"]}
        assert item["note"] == handoff["note"] and item["status"] == "open"
        assert item["escalator"]["id"] == handoff["created_by"]
    other_queue = await client.get(QUEUE, headers=other["x"].headers)
    assert [i["id"] for i in other_queue.json()["items"]] == [foreign_handoff["id"]]


async def test_claimed_filter(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    first = await new_session(client, team["junior"])
    second = await new_session(client, team["junior"])
    h1 = await escalate(client, team["junior"], first["id"])
    h2 = await escalate(client, team["junior"], second["id"])
    claim = await client.post(
        f"/api/v1/ai-sessions/{second['id']}/handoffs/{h2['id']}/claim",
        headers=team["senior"].headers,
    )
    assert claim.status_code == 200

    open_ = await client.get(QUEUE, headers=team["senior"].headers)
    claimed = await client.get(QUEUE, params={"status": "claimed"}, headers=team.owner.headers)

    assert [i["id"] for i in open_.json()["items"]] == [h1["id"]]
    assert [i["id"] for i in claimed.json()["items"]] == [h2["id"]]
    assert claimed.json()["items"][0]["claimed_by"] == team["senior"].id
    bad = await client.get(QUEUE, params={"status": "resolved"}, headers=team.owner.headers)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "status"]


async def test_keyset_pagination_across_pages(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    expected = []
    for n in range(7):
        session = await new_session(client, team["junior"], title=f"p{n}")
        expected.append((await escalate(client, team["junior"], session["id"]))["id"])

    got = await pages(client, team["senior"], limit=3)

    assert [len(p) for p in got] == [3, 3, 1]
    assert [i for p in got for i in p] == expected
    # A page that ends exactly at the last item has no further cursor to follow.
    exact = await pages(client, team["senior"], limit=7)
    assert exact == [expected]


async def test_pagination_is_stable_while_items_leave(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    made = []
    for n in range(4):
        session = await new_session(client, team["junior"], title=f"s{n}")
        made.append((session["id"], (await escalate(client, team["junior"], session["id"]))["id"]))
    first = await client.get(QUEUE, params={"limit": 2}, headers=team["senior"].headers)
    cursor = first.json()["next_cursor"]
    # Someone picks up the first item while the reader is on page one.
    session_id, handoff_id = made[0]
    await client.post(
        f"/api/v1/ai-sessions/{session_id}/handoffs/{handoff_id}/claim",
        headers=team["senior"].headers,
    )
    second = await client.get(
        QUEUE, params={"limit": 2, "cursor": cursor}, headers=team["senior"].headers
    )
    assert [i["id"] for i in second.json()["items"]] == [made[2][1], made[3][1]]


async def test_page_size_is_capped_and_bad_cursors_are_refused(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    headers = team["junior"].headers
    for limit in ("101", "0", "-1", "ten", "1e3"):
        response = await client.get(QUEUE, params={"limit": limit}, headers=headers)
        assert response.status_code == 422, limit
        assert response.json()["detail"][0]["loc"] == ["query", "limit"]
    assert (await client.get(QUEUE, params={"limit": 100}, headers=headers)).status_code == 200
    for cursor in ("garbage", "W10", "eyJhIjogMX0", "%%%", "x" * 501):
        response = await client.get(QUEUE, params={"cursor": cursor}, headers=headers)
        assert response.status_code == 422, cursor
        assert "cursor" in str(response.json()["detail"])


async def test_default_page_size(client: httpx.AsyncClient, factory: Factory) -> None:
    """More than a page of work: the default page stops at 50 and points at the rest."""
    team = await factory.team(junior="engineer", senior="engineer")
    made = []
    for n in range(52):
        session = await new_session(client, team["junior"], title=f"bulk {n}")
        made.append((await escalate(client, team["junior"], session["id"]))["id"])
    response = await client.get(QUEUE, headers=team["senior"].headers)
    body = response.json()
    assert [i["id"] for i in body["items"]] == made[:50]
    rest = await client.get(
        QUEUE, params={"cursor": body["next_cursor"]}, headers=team["senior"].headers
    )
    assert [i["id"] for i in rest.json()["items"]] == made[50:]
    assert rest.json()["next_cursor"] is None


def _cursor(*parts: object) -> str:
    raw = json.dumps(list(parts)).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_forged_cursors_are_422_not_500(client: httpx.AsyncClient, factory: Factory) -> None:
    """A cursor is opaque but client-held: what it decodes to must not reach the database raw."""
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    some_id = "00000000-0000-4000-8000-000000000000"
    forged = [
        _cursor("0001-01-01T00:00:00+14:00", some_id),
        _cursor("9999-12-31T23:59:59-14:00", some_id),
        _cursor("2026-01-01T00:00:00+00:00", "nul\u0000inside"),
        _cursor("2026-01-01T00:00:00+00:00", "\ud800"),
        _cursor("2026-01-01T00:00:00+00:00", "x" * 300),
        _cursor("2026-01-01T00:00:00+00:00", 5),
        _cursor("2026-01-01T00:00:00", some_id),
        _cursor(12345, some_id),
        _cursor("2026-01-01T00:00:00+00:00", some_id, "extra"),
        base64.urlsafe_b64encode(b'{"a": 1, "b": 2}').decode(),
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    ]
    paths = [
        QUEUE,
        "/api/v1/ai-sessions",
        f"/api/v1/ai-sessions/{session['id']}/messages",
        f"/api/v1/ai-sessions/{session['id']}/handoffs",
        "/api/v1/users",
        "/api/v1/tokens",
    ]
    for path in paths:
        for cursor in forged:
            response = await client.get(
                path, params={"cursor": cursor}, headers=team["junior"].headers
            )
            assert response.status_code == 422, (path, cursor, response.text)
            assert "cursor" in response.json()["detail"]


async def test_pages_split_items_created_in_the_same_instant(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    """Keyset order is (created_at, id): ties on time are broken by id, nothing lost or repeated."""
    team = await factory.team(junior="engineer", senior="engineer")
    made = []
    for n in range(5):
        session = await new_session(client, team["junior"], title=f"tie {n}")
        made.append((await escalate(client, team["junior"], session["id"]))["id"])
    same_instant = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(update(Handoff).values(created_at=same_instant))

    got = await pages(client, team["senior"], limit=2)

    assert [len(p) for p in got] == [2, 2, 1]
    assert [i for p in got for i in p] == sorted(made)
