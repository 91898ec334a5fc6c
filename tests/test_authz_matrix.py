"""No cross-account access, proven over every API route read from the app's own route table.

Account A has data in every state (an open escalation, a claimed one, a park, messages, members,
tokens, deliveries). Members of account B then call every route under /api/v1 with A's ids:
each answers 404 (for B's owner, who passes every role gate) and answers exactly as it does for
an id that exists nowhere (for B's engineer, so not even a 403 tells A's ids apart). Every list
route, called by B, shows nothing of A. A's data is unchanged afterwards. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from lifeline.context import AppContext
from lifeline.notifications.models import Delivery
from tests.support.factories import Factory, Person, Team, escalate, new_session
from tests.support.routes import ApiRoute, api_routes, sample_body

# Extra query strings for list routes, so filtered views are covered too.
LIST_VARIANTS: dict[str, list[dict[str, str]]] = {
    "/api/v1/ai-sessions/queue": [{}, {"status": "claimed"}],
    "/api/v1/ai-sessions": [{}, {"status": "escalated"}, {"status": "parked"}, {"mine": "true"}],
    "/api/v1/analytics/escalations": [{}, {"format": "csv"}],
}
# Every path parameter any route uses must be known here: a new kind of id fails the test
# until someone says which of A's records it names.
KNOWN_PARAMS = {
    "session_id",
    "handoff_id",
    "user_id",
    "token_id",
    "delivery_id",
    "message_id",
    "webhook_id",
}
# Lists only admins and owners read: B's engineer and viewer are refused them outright.
ADMIN_LISTS = {"/api/v1/webhooks", "/api/v1/integrations/slack"}


@dataclass
class AccountA:
    team: Team
    cases: list[dict[str, str]]
    secrets: list[str]  # ids and texts that must never appear in B's answers


async def _token_id(client: httpx.AsyncClient, person: Person) -> str:
    response = await client.get("/api/v1/tokens", headers=person.headers)
    token_id: str = response.json()["items"][0]["id"]
    return token_id


async def build_account_a(client: httpx.AsyncClient, factory: Factory, ctx: AppContext) -> AccountA:
    team = await factory.team(name="Account A", eng="engineer", senior="engineer", vic="viewer")
    eng, senior = team["eng"], team["senior"]
    marker = uuid.uuid4().hex[:12]
    texts = {
        "title": f"A-title-{marker}",
        "note": f"A-note-{marker}",
        "message": f"A-message-{marker}",
    }
    msgs = [{"role": "user", "content": texts["message"]}]
    s_open = await new_session(client, eng, title=texts["title"], messages=msgs)
    h_open = await escalate(client, eng, s_open["id"], note=texts["note"])
    s_claimed = await new_session(client, eng, title=texts["title"] + "-c", messages=msgs)
    h_claimed = await escalate(client, eng, s_claimed["id"], note=texts["note"] + "-c")
    claim = await client.post(
        f"/api/v1/ai-sessions/{s_claimed['id']}/handoffs/{h_claimed['id']}/claim",
        headers=senior.headers,
    )
    assert claim.status_code == 200
    s_park = await new_session(client, eng, title=texts["title"] + "-p", messages=msgs)
    h_park = await escalate(client, eng, s_park["id"], intent="park", note=texts["note"] + "-p")
    transcript = await client.get(
        f"/api/v1/ai-sessions/{s_open['id']}/messages", headers=eng.headers
    )
    message_id = transcript.json()["items"][0]["id"]
    await ctx.tasks.drain(wait_seconds=10)
    async with ctx.sessionmaker() as db:
        delivery_ids = list(
            await db.scalars(select(Delivery.id).where(Delivery.account_id == team.account.id))
        )
    delivery_id = delivery_ids[0] if delivery_ids else str(uuid.uuid4())

    hook = await client.post(
        "/api/v1/webhooks",
        headers=team.owner.headers,
        json={"url": "https://93.184.215.14/a-hook", "event_types": ["handoff.expired"]},
    )
    assert hook.status_code == 201, hook.text
    webhook_id = hook.json()["id"]

    tokens = {p.id: await _token_id(client, p) for p in (eng, senior, team.owner)}
    cases = [
        {
            "session_id": s_open["id"],
            "handoff_id": h_open["id"],
            "user_id": eng.id,
            "token_id": tokens[eng.id],
            "delivery_id": delivery_id,
            "message_id": message_id,
            "webhook_id": webhook_id,
        },
        {
            "session_id": s_claimed["id"],
            "handoff_id": h_claimed["id"],
            "user_id": senior.id,
            "token_id": tokens[senior.id],
            "delivery_id": delivery_id,
            "message_id": message_id,
            "webhook_id": webhook_id,
        },
        {
            "session_id": s_park["id"],
            "handoff_id": h_park["id"],
            "user_id": team.owner.id,
            "token_id": tokens[team.owner.id],
            "delivery_id": delivery_id,
            "message_id": message_id,
            "webhook_id": webhook_id,
        },
    ]
    secrets = [
        *texts.values(),
        team.account.id,
        *(p.id for p in (eng, senior, team["vic"], team.owner)),
        *(p.email for p in (eng, senior, team["vic"], team.owner)),
        *tokens.values(),
        *(s["id"] for s in (s_open, s_claimed, s_park)),
        *(h["id"] for h in (h_open, h_claimed, h_park)),
        message_id,
        webhook_id,
        *delivery_ids,
    ]
    return AccountA(team=team, cases=cases, secrets=secrets)


async def call(
    client: httpx.AsyncClient, route: ApiRoute, person: Person, ids: dict[str, str], **query: str
) -> httpx.Response:
    body = sample_body(route.body_model) if route.body_model else None
    return await client.request(
        route.method, route.url(**ids), headers=person.headers, json=body, params=query or None
    )


def _timeless(value: Any) -> Any:
    """Drop the one field that changes by itself (a queue item's age)."""
    if isinstance(value, dict):
        return {k: _timeless(v) for k, v in value.items() if k != "age_seconds"}
    if isinstance(value, list):
        return [_timeless(v) for v in value]
    return value


async def snapshot(client: httpx.AsyncClient, a: AccountA) -> dict[str, Any]:
    """What A's owner and members see of A: must be identical before and after B's attempts."""
    owner, eng = a.team.owner, a.team["eng"]
    seen: dict[str, Any] = {}
    for path in ("/api/v1/users", "/api/v1/ai-sessions", "/api/v1/ai-sessions/queue"):
        seen[path] = (await client.get(path, headers=owner.headers)).json()
    seen["claimed"] = (
        await client.get("/api/v1/ai-sessions/queue?status=claimed", headers=owner.headers)
    ).json()
    for case in a.cases:
        path = f"/api/v1/ai-sessions/{case['session_id']}/handoffs"
        seen[path] = (await client.get(path, headers=eng.headers)).json()
        messages = f"/api/v1/ai-sessions/{case['session_id']}/messages"
        seen[messages] = (await client.get(messages, headers=eng.headers)).json()
    seen["account"] = (await client.get("/api/v1/account", headers=owner.headers)).json()
    for person in (owner, eng, a.team["senior"], a.team["vic"]):
        me = await client.get("/api/v1/me", headers=person.headers)
        assert me.status_code == 200, "one of A's tokens stopped working"
        seen[f"me:{person.id}"] = me.json()
    timeless: dict[str, Any] = _timeless(seen)
    return timeless


async def test_no_route_reaches_another_accounts_data(
    app: FastAPI, client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    a = await build_account_a(client, factory, ctx)
    b = await factory.team(name="Account B", eng="engineer", vic="viewer")
    b_session = await new_session(client, b["eng"], title="B's own work")
    await escalate(client, b["eng"], b_session["id"])
    before = await snapshot(client, a)

    routes = [r for r in api_routes(app) if not r.streaming]
    unknown = {p for r in routes for p in r.path_params} - KNOWN_PARAMS
    assert not unknown, f"routes use ids this matrix can't map to account A's data: {unknown}"
    with_ids = [r for r in routes if r.path_params]
    lists = [r for r in routes if r.method == "GET" and not r.path_params]
    assert len(with_ids) >= 12 and len(lists) >= 5, [r.label for r in routes]

    # Positive control: A's own owner reads every GET route with A's ids (escalated case).
    for route in with_ids:
        if route.method == "GET":
            ok = await call(client, route, a.team.owner, a.cases[0])
            assert ok.status_code == 200, (route.label, ok.text)

    nowhere = {name: str(uuid.uuid4()) for name in KNOWN_PARAMS}
    for route in with_ids:
        for case in a.cases:
            as_owner = await call(client, route, b.owner, case)
            assert as_owner.status_code == 404, (route.label, case, as_owner.text)
            assert set(as_owner.json()) == {"detail"}
            foreign = await call(client, route, b["eng"], case)
            absent = await call(client, route, b["eng"], nowhere)
            assert (foreign.status_code, foreign.json()) == (absent.status_code, absent.json()), (
                route.label,
                case,
            )
            assert foreign.status_code in (403, 404), (route.label, foreign.text)

    a_ids_seen_by_a: set[str] = set()
    for route in lists:
        for query in LIST_VARIANTS.get(route.path, [{}]):
            for person in (b.owner, b["eng"], b["vic"]):
                response = await call(client, route, person, {}, **query)
                if route.path in ADMIN_LISTS and person is not b.owner:
                    assert response.status_code == 403, (route.label, response.text)
                    continue
                assert response.status_code == 200, (route.label, query, response.text)
                leaked = [s for s in a.secrets if s in response.text]
                assert not leaked, (route.label, query, leaked)
            own = await call(client, route, a.team.owner, {}, **query)
            a_ids_seen_by_a |= {s for s in a.secrets if s in own.text}
    # The lists do show A's data to A: the checks above compared against real content.
    for must_show in (a.cases[0]["session_id"], a.cases[0]["handoff_id"], a.team["eng"].id):
        assert must_show in a_ids_seen_by_a

    assert await snapshot(client, a) == before


@pytest.mark.parametrize("who", ["owner", "eng"])
async def test_a_foreign_id_is_indistinguishable_from_no_id(
    client: httpx.AsyncClient, factory: Factory, who: str
) -> None:
    """Error texts for A's ids equal those for made-up ids: nothing confirms A's ids exist."""
    a = await factory.team(eng="engineer")
    session = await new_session(client, a["eng"])
    b = await factory.team(eng="engineer")
    caller = b.owner if who == "owner" else b["eng"]
    made_up = str(uuid.uuid4())
    for path in (
        f"/api/v1/ai-sessions/{session['id']}",
        f"/api/v1/users/{a['eng'].id}",
    ):
        real = await client.get(path, headers=caller.headers)
        fake = await client.get(path.rsplit("/", 1)[0] + "/" + made_up, headers=caller.headers)
        assert real.status_code == fake.status_code == 404
        assert real.json() == fake.json()
