"""Bad input: a 4xx naming the field, never a 500, never a partial write; SQLite and PostgreSQL.

The sweeps walk the app's own route table, so a route added later is swept too.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from lifeline.context import AppContext
from lifeline.handoffs.models import Handoff
from lifeline.handoffs.schemas import MAX_NOTE_LENGTH
from lifeline.models import Base
from tests.support.factories import Factory, Person, escalate, new_session
from tests.support.routes import ApiRoute, api_routes, sample_body

API = "/api/v1"

# Values that no string, number or enum field should take without a clean 422.
ODD_VALUES: list[Any] = [
    None,
    "",
    " ",
    "\x00",
    "nul\x00inside",
    "\ud800",  # a lone surrogate: not encodable as UTF-8
    "x" * 200_001,
    "😀" * 10,
    "' OR 1=1 --",
    0,
    -1,
    10**30,
    1.5,
    float("nan"),
    True,
    [],
    ["x"],
    {},
    {"$gt": ""},
]

# Bodies that are not the object any route expects.
RAW_BODIES: list[bytes] = [
    b"",
    b"not json",
    b"{",
    b'{"a": }',
    b"[]",
    b"null",
    b"1",
    b'"text"',
    b"[" * 5000 + b"]" * 5000,
    b'{"a": ' * 3000 + b"1" + b"}" * 3000,
    b'{"title": "\xff\xfe"}',
    b"\xef\xbb\xbf{",
    b"\x00",
]

ODD_IDS = [
    "%00",
    "x" * 1000,
    "..%2F..%2Fetc",
    "%F0%9F%98%80",
    "%20",
    "null",
    "' OR '1'='1",
    "%FF%FE",
    "00000000-0000-0000-0000-000000000000",
    "123",
]

ODD_QUERY = ["", "\x00", "x" * 600, "-1", "99999999999999999999999", "NaN", "😀", "[]"]


def encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode("utf-8", "surrogatepass")


def names_a_field(response: httpx.Response, field: str | None = None) -> bool:
    detail = response.json()["detail"]
    if not isinstance(detail, list) or not detail:
        return False
    locs = [tuple(str(part) for part in error["loc"]) for error in detail]
    return all(loc for loc in locs) and (field is None or any(field in loc for loc in locs))


async def row_counts(ctx: AppContext) -> dict[str, int]:
    # Work the last accepted request started after commit (an escalation's wave expanding
    # into its delivery rows) finishes first: only what a refused request writes may differ.
    await ctx.tasks.drain()
    counts: dict[str, int] = {}
    async with ctx.sessionmaker() as db:
        for table in Base.metadata.sorted_tables:
            counts[table.name] = int(await db.scalar(select(func.count()).select_from(table)) or 0)
    return counts


async def own_ids(client: httpx.AsyncClient, factory: Factory) -> tuple[Person, dict[str, str]]:
    """An owner with ids of their own for every kind of path parameter."""
    team = await factory.team(eng="engineer")
    owner = team.owner
    session = await new_session(client, owner)
    handoff = await escalate(client, owner, session["id"])
    messages = await client.get(
        f"{API}/ai-sessions/{session['id']}/messages", headers=owner.headers
    )
    tokens = await client.get(f"{API}/tokens", headers=owner.headers)
    # A public address needing no DNS; subscribed to an event nothing here emits.
    hook = await client.post(
        f"{API}/webhooks",
        headers=owner.headers,
        json={"url": "https://93.184.215.14/hook", "event_types": ["handoff.expired"]},
    )
    assert hook.status_code == 201, hook.text
    return owner, {
        "session_id": session["id"],
        "handoff_id": handoff["id"],
        "user_id": team["eng"].id,
        "token_id": tokens.json()["items"][0]["id"],
        "message_id": messages.json()["items"][0]["id"],
        "delivery_id": str(uuid.uuid4()),
        "webhook_id": hook.json()["id"],
    }


def writing_routes(app: FastAPI) -> list[ApiRoute]:
    return [r for r in api_routes(app) if r.body_model is not None and not r.streaming]


async def test_every_body_field_rejects_odd_values_cleanly(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    owner, ids = await own_ids(client, factory)
    routes = writing_routes(app)
    assert len(routes) >= 8, [r.label for r in routes]
    before = await row_counts(ctx)
    for route in routes:
        assert route.body_model is not None
        valid = sample_body(route.body_model)
        fields = list(route.body_model.model_json_schema().get("properties", {}))
        for field in fields:
            for value in ODD_VALUES:
                body = {**valid, field: value}
                try:
                    route.body_model.model_validate_json(encode(body))
                    continue  # an acceptable value for this field: not what this sweep is about
                except ValueError:
                    pass
                response = await client.request(
                    route.method,
                    route.url(**ids),
                    headers={**owner.headers, "content-type": "application/json"},
                    content=encode(body),
                )
                label = f"{route.label} {field}={value!r:.40}"
                assert response.status_code == 422, (label, response.text[:300])
                assert names_a_field(response, field), (label, response.text[:300])
    assert await row_counts(ctx) == before, "a refused request wrote something"


async def test_odd_values_the_schema_accepts_never_break_the_server(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    """Whatever passes validation is stored and returned faithfully, or refused with a 4xx."""
    owner, ids = await own_ids(client, factory)
    for route in writing_routes(app):
        assert route.body_model is not None
        valid = sample_body(route.body_model)
        for field in route.body_model.model_json_schema().get("properties", {}):
            for value in ["😀 ünïcødé", "a\tb\nc", "<script>alert(1)</script>", "%s%n", "\\x00"]:
                body = {**valid, field: value}
                if field == "email":
                    body[field] = f"odd+{uuid.uuid4().hex[:6]}@example.com"
                response = await client.request(
                    route.method, route.url(**ids), headers=owner.headers, json=body
                )
                assert response.status_code < 500, (route.label, field, response.text[:300])


async def test_malformed_bodies_are_refused(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    owner, ids = await own_ids(client, factory)
    before = await row_counts(ctx)
    for raw in RAW_BODIES:
        for route in writing_routes(app):
            for content_type in ("application/json", "text/plain", None):
                headers = dict(owner.headers)
                if content_type:
                    headers["content-type"] = content_type
                response = await client.request(
                    route.method, route.url(**ids), headers=headers, content=raw
                )
                label = (route.label, raw[:20], content_type)
                assert 400 <= response.status_code < 500, (*label, response.text[:300])
                assert "detail" in response.json()
    assert await row_counts(ctx) == before


async def test_invalid_json_is_422_naming_the_body(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team()
    response = await client.post(
        f"{API}/ai-sessions",
        headers={**team.owner.headers, "content-type": "application/json"},
        content=b'{"title": "half',
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"][0] == "body"
    assert response.json()["detail"][0]["type"] == "json_invalid"


async def test_odd_path_ids_are_404_never_500(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    owner, ids = await own_ids(client, factory)
    routes = [r for r in api_routes(app) if r.path_params and not r.streaming]
    for route in routes:
        body = sample_body(route.body_model) if route.body_model else None
        for param in route.path_params:
            for odd in ODD_IDS:
                url = route.path.format(**{**ids, param: "{ODD}"}).replace("{ODD}", odd)
                response = await client.request(route.method, url, headers=owner.headers, json=body)
                assert response.status_code in (400, 403, 404, 405), (
                    route.label,
                    odd,
                    response.text,
                )
                if response.status_code == 404:
                    assert isinstance(response.json()["detail"], str)


async def test_odd_query_values_are_422_naming_the_parameter(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory
) -> None:
    owner, ids = await own_ids(client, factory)
    routes = [r for r in api_routes(app) if r.method == "GET" and not r.streaming]
    for route in routes:
        for param in route.query_params:
            for odd in ODD_QUERY:
                response = await client.get(
                    route.url(**ids), params={param: odd}, headers=owner.headers
                )
                label = (route.label, param, odd[:20])
                assert response.status_code in (200, 400, 404, 422), (*label, response.text[:300])
                if response.status_code == 422:
                    assert names_a_field(response, param) or param in str(
                        response.json()["detail"]
                    ), (*label, response.text[:300])


CREATE_SMUGGLING: list[tuple[str, dict[str, Any], str]] = [
    ("/ai-sessions", {"title": "t", "account_id": "x"}, "account_id"),
    ("/ai-sessions", {"title": "t", "status": "resolved"}, "status"),
    ("/ai-sessions", {"title": "t", "created_by": "x"}, "created_by"),
    ("/ai-sessions", {"title": "t", "assigned_to": "x"}, "assigned_to"),
    ("/users", {"email": "new@example.com", "account_id": "x"}, "account_id"),
    ("/tokens", {"name": "t", "user_id": "x"}, "user_id"),
]
HANDOFF_SMUGGLING = [
    ("status", "claimed"),
    ("claimed_by", "someone"),
    ("account_id", "other"),
    ("created_by", "someone"),
    ("session_id", "other"),
    ("role", "owner"),
]


async def test_bodies_cannot_smuggle_fields_into_creates(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team()
    before = await row_counts(ctx)
    for path, body, field in CREATE_SMUGGLING:
        response = await client.post(f"{API}{path}", headers=team.owner.headers, json=body)
        assert response.status_code == 422, (path, body)
        assert names_a_field(response, field), (path, body)
        assert response.json()["detail"][0]["type"] == "extra_forbidden"
    assert await row_counts(ctx) == before


async def test_handoff_bodies_cannot_smuggle_state(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(eng="engineer")
    session = await new_session(client, team["eng"])
    before = await row_counts(ctx)
    for field, value in HANDOFF_SMUGGLING:
        response = await client.post(
            f"{API}/ai-sessions/{session['id']}/handoff",
            headers=team["eng"].headers,
            json={"intent": "escalate", "note": "n", field: value},
        )
        assert response.status_code == 422, field
        assert names_a_field(response, field), field
    assert await row_counts(ctx) == before
    read = await client.get(f"{API}/ai-sessions/{session['id']}", headers=team["eng"].headers)
    assert read.json()["status"] == "active"


async def test_role_and_account_cannot_be_smuggled_into_updates(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(adm="admin", eng="engineer")
    other = await factory.team()
    cases: list[tuple[str, str, Person, dict[str, Any], str]] = [
        ("PATCH", "/me", team["eng"], {"role": "owner"}, "role"),
        ("PATCH", "/me", team["eng"], {"account_id": other.account.id}, "account_id"),
        ("PATCH", "/me", team["eng"], {"deleted_at": None}, "deleted_at"),
        ("PATCH", f"/users/{team['eng'].id}", team["adm"], {"account_id": "x"}, "account_id"),
        ("PATCH", f"/users/{team['eng'].id}", team["adm"], {"email": "x@y.example"}, "email"),
        ("PATCH", "/account", team["adm"], {"id": "x"}, "id"),
    ]
    for method, path, person, body, field in cases:
        response = await client.request(method, f"{API}{path}", headers=person.headers, json=body)
        assert response.status_code == 422, (path, body)
        assert names_a_field(response, field), (path, body)
    me = (await client.get(f"{API}/me", headers=team["eng"].headers)).json()
    assert me["role"] == "engineer" and me["account"]["id"] == team.account.id


async def test_a_huge_note_is_refused(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(eng="engineer")
    session = await new_session(client, team["eng"])
    response = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["eng"].headers,
        json={"intent": "escalate", "note": "n" * (MAX_NOTE_LENGTH + 1)},
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "note"]
    async with ctx.sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(Handoff)) == 0
    at_limit = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["eng"].headers,
        json={"intent": "escalate", "note": "n" * MAX_NOTE_LENGTH},
    )
    assert at_limit.status_code == 201


async def test_handoff_field_errors_name_the_field(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer")
    session = await new_session(client, team["eng"])
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "intent"),
        ({"intent": "panic"}, "intent"),
        ({"intent": None}, "intent"),
        ({"intent": "escalate", "note": 5}, "note"),
        ({"intent": "escalate", "note": "bad\x00byte"}, "note"),
    ]
    for body, field in cases:
        response = await client.post(
            f"{API}/ai-sessions/{session['id']}/handoff", headers=team["eng"].headers, json=body
        )
        assert response.status_code == 422, body
        assert response.json()["detail"][0]["loc"] == ["body", field], body


async def test_text_round_trips_exactly(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer")
    title = "Ünïcødé 😀 — 'quotes' \"double\" <b>tags</b> \\ back\tslash"
    session = await new_session(
        client, team["eng"], title=title, messages=[{"role": "user", "content": title * 3}]
    )
    assert session["title"] == title
    handoff = await escalate(client, team["eng"], session["id"], note=title)
    assert handoff["note"] == title
    messages = await client.get(
        f"{API}/ai-sessions/{session['id']}/messages", headers=team["eng"].headers
    )
    assert messages.json()["items"][0]["content"] == title * 3


async def test_a_refused_password_is_never_echoed_back(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team()
    response = await client.patch(
        "/api/v1/me",
        headers=team.owner.headers,
        json={"password": "hunter2", "current_password": "whatever"},
    )
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "password"]]
    assert "hunter2" not in response.text
