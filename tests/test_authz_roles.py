"""Who may do what: every /api/v1 route × every role × own or foreign account, as one table.

The route list is read from the application (HTTP and WebSocket routes under /api/v1), and
``MATRIX`` must hold an entry for each: a route added later fails this test until someone
writes down what every role gets from it. Each row is one route on one kind of target record;
each column one caller:

- ``owner``, ``admin``, ``engineer``, ``viewer``: members of the target's account with that
  role and no part in the record (the engineer neither created nor picked it up);
- ``creator``: the engineer who created the session and escalated (or parked) it;
- ``claimer``: the engineer who picked the escalation up (where it is picked up; elsewhere an
  uninvolved engineer);
- ``stranger``: the owner of another account (passes every role gate; must still see nothing);
- ``anonymous``: no credentials at all.

Targets: ``-`` (no id in the path), sessions ``private`` (active, never escalated), ``open`` and
``claimed`` (escalated, picked up by the claimer), handoffs ``open``, ``claimed``, ``park`` and
``resolved``, users ``member`` (an engineer), ``self`` (the caller) and ``owner`` (the account's
owner), tokens ``own`` (one of the caller's) and ``other`` (a teammate's).

Every call that writes gets a freshly built target, so cells never depend on each other. Calls
go over HTTP to the app served by uvicorn, the only way to reach the SSE and WebSocket routes.
On SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.routing import WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from lifeline.accounts.models import Role
from lifeline.app import create_app
from tests.conftest import make_settings
from tests.realtime.conftest import live  # noqa: F401  (the fixture, served by uvicorn)
from tests.support.factories import Factory, Person, escalate, new_session
from tests.support.routes import API_PREFIX, ApiRoute, api_routes, sample_body

COLUMNS = ("owner", "admin", "engineer", "viewer", "creator", "claimer", "stranger", "anonymous")

S = "/api/v1/ai-sessions/{session_id}"
H = "/api/v1/ai-sessions/{session_id}/handoffs/{handoff_id}"
W = "/api/v1/webhooks/{webhook_id}"
# A public address that needs no DNS: webhooks to it pass the SSRF guard (nothing listens).
HOOK_URL = "https://93.184.215.14/hook"

# fmt: off
#                                                   own  adm  eng  vwr  crt  clm  str  anon
MATRIX: dict[tuple[str, str], tuple[int, int, int, int, int, int, int, int]] = {
    ("GET /api/v1/me", "-"):                          (200, 200, 200, 200, 200, 200, 200, 401),
    ("PATCH /api/v1/me", "-"):                        (200, 200, 200, 200, 200, 200, 200, 401),
    ("GET /api/v1/account", "-"):                     (200, 200, 200, 200, 200, 200, 200, 401),
    ("PATCH /api/v1/account", "-"):                   (200, 200, 403, 403, 403, 403, 200, 401),
    ("GET /api/v1/escalation-policy", "-"):           (200, 200, 200, 200, 200, 200, 200, 401),
    ("PUT /api/v1/escalation-policy", "-"):           (200, 200, 403, 403, 403, 403, 200, 401),
    ("GET /api/v1/users", "-"):                       (200, 200, 200, 200, 200, 200, 200, 401),
    ("POST /api/v1/users", "-"):                      (201, 201, 403, 403, 403, 403, 201, 401),
    ("GET /api/v1/users/{user_id}", "member"):        (200, 200, 200, 200, 200, 200, 404, 401),
    ("GET /api/v1/users/{user_id}", "self"):          (200, 200, 200, 200, 200, 200, 200, 401),
    ("PATCH /api/v1/users/{user_id}", "member"):      (200, 200, 403, 403, 403, 403, 404, 401),
    # Making oneself admin: a no-op for an admin, the last owner can't step down.
    ("PATCH /api/v1/users/{user_id}", "self"):        (409, 200, 403, 403, 403, 403, 409, 401),
    # Only an owner may change an owner.
    ("PATCH /api/v1/users/{user_id}", "owner"):       (409, 403, 403, 403, 403, 403, 404, 401),
    ("DELETE /api/v1/users/{user_id}", "member"):     (204, 204, 403, 403, 403, 403, 404, 401),
    ("DELETE /api/v1/users/{user_id}", "self"):       (409, 409, 403, 403, 403, 403, 409, 401),
    ("DELETE /api/v1/users/{user_id}", "owner"):      (409, 403, 403, 403, 403, 403, 404, 401),
    ("GET /api/v1/tokens", "-"):                      (200, 200, 200, 200, 200, 200, 200, 401),
    ("POST /api/v1/tokens", "-"):                     (201, 201, 201, 201, 201, 201, 201, 401),
    ("DELETE /api/v1/tokens/{token_id}", "own"):      (204, 204, 204, 204, 204, 204, 204, 401),
    # Tokens are personal: not even an owner revokes a teammate's (they remove the teammate).
    ("DELETE /api/v1/tokens/{token_id}", "other"):    (404, 404, 404, 404, 404, 404, 404, 401),
    ("GET /api/v1/ai-sessions/queue", "-"):           (200, 200, 200, 200, 200, 200, 200, 401),
    ("POST /api/v1/ai-sessions", "-"):                (201, 201, 201, 201, 201, 201, 201, 401),
    ("GET /api/v1/ai-sessions", "-"):                 (200, 200, 200, 200, 200, 200, 200, 401),
    # A session is its creator's, its assignee's and the managers'; once escalated, everyone's.
    (f"GET {S}", "private"):                          (200, 200, 404, 404, 200, 404, 404, 401),
    (f"GET {S}", "open"):                             (200, 200, 200, 200, 200, 200, 404, 401),
    (f"GET {S}", "claimed"):                          (200, 200, 200, 200, 200, 200, 404, 401),
    (f"GET {S}/messages", "private"):                 (200, 200, 404, 404, 200, 404, 404, 401),
    (f"GET {S}/messages", "open"):                    (200, 200, 200, 200, 200, 200, 404, 401),
    (f"GET {S}/messages", "claimed"):                 (200, 200, 200, 200, 200, 200, 404, 401),
    # Only the creator or the assignee writes to the transcript.
    (f"POST {S}/messages", "private"):                (403, 403, 404, 404, 201, 404, 404, 401),
    (f"POST {S}/messages", "open"):                   (403, 403, 403, 403, 201, 403, 404, 401),
    (f"POST {S}/messages", "claimed"):                (403, 403, 403, 403, 201, 201, 404, 401),
    # Escalate: engineer+ (a viewer is refused before anything is looked up), creator or
    # assignee, and only one live escalation per session.
    (f"POST {S}/handoff", "private"):                 (403, 403, 404, 403, 201, 404, 404, 401),
    (f"POST {S}/handoff", "open"):                    (403, 403, 403, 403, 409, 403, 404, 401),
    (f"POST {S}/handoff", "claimed"):                 (403, 403, 403, 403, 409, 409, 404, 401),
    (f"GET {S}/handoffs", "private"):                 (200, 200, 404, 404, 200, 404, 404, 401),
    (f"GET {S}/handoffs", "open"):                    (200, 200, 200, 200, 200, 200, 404, 401),
    (f"GET {S}/handoffs", "claimed"):                 (200, 200, 200, 200, 200, 200, 404, 401),
    # Pick Up: engineer, admin or owner, never one's own; a taken one is a 409; a park is
    # invisible to everyone but its creator.
    (f"POST {H}/claim", "open"):                      (200, 200, 200, 403, 403, 200, 404, 401),
    (f"POST {H}/claim", "claimed"):                   (409, 409, 409, 403, 403, 409, 404, 401),
    (f"POST {H}/claim", "park"):                      (404, 404, 404, 403, 409, 404, 404, 401),
    (f"POST {H}/claim", "resolved"):                  (409, 409, 409, 403, 403, 409, 404, 401),
    # The owner may release what anyone holds (the escape hatch); nothing held is a conflict.
    (f"POST {H}/release", "open"):                    (409, 403, 403, 403, 403, 403, 404, 401),
    (f"POST {H}/release", "claimed"):                 (200, 403, 403, 403, 403, 200, 404, 401),
    (f"POST {H}/release", "park"):                    (404, 404, 404, 403, 403, 404, 404, 401),
    (f"POST {H}/release", "resolved"):                (409, 403, 403, 403, 403, 409, 404, 401),
    (f"POST {H}/resolve", "open"):                    (403, 403, 403, 403, 403, 403, 404, 401),
    (f"POST {H}/resolve", "claimed"):                 (403, 403, 403, 403, 403, 200, 404, 401),
    (f"POST {H}/resolve", "park"):                    (404, 404, 404, 403, 200, 404, 404, 401),
    (f"POST {H}/resolve", "resolved"):                (403, 403, 403, 403, 403, 409, 404, 401),
    (f"POST {H}/cancel", "open"):                     (403, 403, 403, 403, 200, 403, 404, 401),
    (f"POST {H}/cancel", "claimed"):                  (403, 403, 403, 403, 200, 403, 404, 401),
    (f"POST {H}/cancel", "park"):                     (404, 404, 404, 403, 200, 404, 404, 401),
    (f"POST {H}/cancel", "resolved"):                 (403, 403, 403, 403, 409, 403, 404, 401),
    # Who was told: admins, owners and the escalator.
    ("GET /api/v1/handoffs/{handoff_id}/deliveries", "open"):     (200, 200, 403, 403, 200, 403, 404, 401),  # noqa: E501
    ("GET /api/v1/handoffs/{handoff_id}/deliveries", "claimed"):  (200, 200, 403, 403, 200, 403, 404, 401),  # noqa: E501
    ("GET /api/v1/handoffs/{handoff_id}/deliveries", "park"):     (404, 404, 404, 404, 200, 404, 404, 401),  # noqa: E501
    ("GET /api/v1/handoffs/{handoff_id}/deliveries", "resolved"): (200, 200, 403, 403, 200, 403, 404, 401),  # noqa: E501
    ("GET /api/v1/events", "-"):                      (200, 200, 200, 200, 200, 200, 200, 401),
    # 101: the WebSocket handshake succeeded.
    ("WS /api/v1/ws", "-"):                           (101, 101, 101, 101, 101, 101, 101, 401),
    ("GET /api/v1/presence", "-"):                    (200, 200, 200, 200, 200, 200, 200, 401),
    ("GET /api/v1/analytics/escalations", "-"):       (200, 200, 200, 200, 200, 200, 200, 401),
    # Integrations: admins and owners only. (Slack can't be reached from the test server, so
    # saving a bot token is a 422 naming it.)
    ("POST /api/v1/webhooks", "-"):                   (201, 201, 403, 403, 403, 403, 201, 401),
    ("GET /api/v1/webhooks", "-"):                    (200, 200, 403, 403, 403, 403, 200, 401),
    (f"GET {W}", "hook"):                             (200, 200, 403, 403, 403, 403, 404, 401),
    (f"PATCH {W}", "hook"):                           (200, 200, 403, 403, 403, 403, 404, 401),
    (f"DELETE {W}", "hook"):                          (204, 204, 403, 403, 403, 403, 404, 401),
    (f"POST {W}/rotate-secret", "hook"):              (200, 200, 403, 403, 403, 403, 404, 401),
    (f"POST {W}/test", "hook"):                       (202, 202, 403, 403, 403, 403, 404, 401),
    (f"GET {W}/deliveries", "hook"):                  (200, 200, 403, 403, 403, 403, 404, 401),
    (f"POST {W}/replay", "hook"):                     (202, 202, 403, 403, 403, 403, 404, 401),
    # The delivery is still queued (its receiver is unreachable): a replay is a 409.
    (f"POST {W}/deliveries/{{delivery_id}}/replay", "hook"): (409, 409, 403, 403, 403, 403, 404, 401),  # noqa: E501
    ("GET /api/v1/integrations/slack", "-"):          (200, 200, 403, 403, 403, 403, 200, 401),
    ("PUT /api/v1/integrations/slack", "-"):          (422, 422, 403, 403, 403, 403, 422, 401),
    ("DELETE /api/v1/integrations/slack", "-"):       (404, 404, 403, 403, 403, 403, 404, 401),
}
# fmt: on

# Bodies that mean something for the route; the others get a minimal valid body.
BODIES: dict[str, dict[str, Any]] = {
    "PATCH /api/v1/me": {"email_notifications": "offline_only"},
    "PATCH /api/v1/account": {"reminder_minutes": 15},
    "PUT /api/v1/escalation-policy": {
        "steps": [{"after_minutes": 0, "notify": {"roles": ["admin"]}, "channels": ["push"]}]
    },
    "PATCH /api/v1/users/{user_id}": {"role": "admin"},
    f"POST {S}/messages": {"role": "note", "content": "looking at it"},
    f"POST {S}/handoff": {"intent": "escalate", "note": "please help"},
    "POST /api/v1/webhooks": {"url": HOOK_URL, "event_types": ["handoff.expired"]},
    f"POST {W}/replay": {"since": "2026-01-01T00:00:00Z"},
}

SESSION_TARGETS = ("private", "open", "claimed")
HANDOFF_TARGETS = ("open", "claimed", "park", "resolved")
_unique = itertools.count(1)


@dataclass
class World:
    client: httpx.AsyncClient
    base: str
    people: dict[str, Person]
    bystander: Person
    cache: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)

    def headers(self, column: str) -> dict[str, str]:
        return {} if column == "anonymous" else self.people[column].headers

    async def post(self, person: Person, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.client.post(path, headers=person.headers, json=body)
        assert response.status_code in (200, 201, 202), (path, response.text)
        answer: dict[str, Any] = response.json()
        return answer

    async def session(self, state: str) -> dict[str, str]:
        creator, claimer = self.people["creator"], self.people["claimer"]
        session = await new_session(self.client, creator, title=f"target {next(_unique)}")
        ids = {"session_id": session["id"]}
        if state == "private":
            return ids
        if state == "park":
            handoff = await escalate(self.client, creator, session["id"], intent="park")
            return {**ids, "handoff_id": handoff["id"]}
        handoff = await escalate(self.client, creator, session["id"])
        ids["handoff_id"] = handoff["id"]
        path = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
        if state in ("claimed", "resolved"):
            await self.post(claimer, f"{path}/claim", {})
        if state == "resolved":
            await self.post(claimer, f"{path}/resolve", {})
        return ids

    async def member(self) -> dict[str, str]:
        email = f"member{next(_unique)}@matrix.example"
        created = await self.post(
            self.people["owner"], "/api/v1/users", {"email": email, "role": "engineer"}
        )
        return {"user_id": created["user"]["id"]}

    async def token_of(self, person: Person) -> dict[str, str]:
        created = await self.post(person, "/api/v1/tokens", {"name": f"t{next(_unique)}"})
        return {"token_id": created["id"]}

    async def hook(self) -> dict[str, str]:
        """A webhook of the account, with one delivery (a test event) queued for it."""
        owner = self.people["owner"]
        created = await self.post(
            owner, "/api/v1/webhooks", {"url": HOOK_URL, "event_types": ["handoff.expired"]}
        )
        test = await self.post(owner, f"/api/v1/webhooks/{created['id']}/test", {})
        return {"webhook_id": created["id"], "delivery_id": test["id"]}

    async def target(self, label: str, kind: str, column: str) -> dict[str, str]:
        """Path ids for one cell: fresh for writes, shared between reads."""
        actor = self.people.get(column, self.people["engineer"])
        if kind == "self":
            return {"user_id": actor.id}
        if kind == "owner":
            return {"user_id": self.people["owner"].id}
        if kind == "own":
            return await self.token_of(actor)
        if kind == "other":
            return await self.token_of(self.bystander)
        reads = label.startswith("GET ")
        if reads and (label, kind) in self.cache:
            return self.cache[(label, kind)]
        ids: dict[str, str] = {}
        if kind == "member":
            ids = await self.member()
        elif kind in SESSION_TARGETS or kind in HANDOFF_TARGETS:
            ids = await self.session(kind)
        elif kind == "hook":
            ids = await self.hook()
        if reads:
            self.cache[(label, kind)] = ids
        return ids


def route_table(app: FastAPI) -> dict[str, ApiRoute | None]:
    """Every route under /api/v1 by label; WebSocket routes map to None."""
    table: dict[str, ApiRoute | None] = {r.label: r for r in api_routes(app)}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, WebSocketRoute) and context.path.startswith(API_PREFIX):
            table[f"WS {context.path}"] = None
    return table


def body_for(label: str, route: ApiRoute) -> dict[str, Any] | None:
    if label in BODIES:
        return BODIES[label]
    return sample_body(route.body_model) if route.body_model else None


async def status_of(world: World, label: str, route: ApiRoute | None, column: str, ids: Any) -> int:
    method, _, path = label.partition(" ")
    url = path.format(**ids)
    headers = world.headers(column)
    if route is None:  # a WebSocket handshake
        ws_url = world.base.replace("http://", "ws://", 1) + url
        try:
            async with connect(ws_url, additional_headers=headers, open_timeout=15):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code
    if route.streaming:
        async with world.client.stream(method, url, headers=headers) as response:
            return response.status_code
    response = await world.client.request(method, url, headers=headers, json=body_for(label, route))
    if response.status_code >= 500:
        raise AssertionError(f"{label} as {column}: {response.status_code} {response.text}")
    return response.status_code


async def build_world(client: httpx.AsyncClient, base: str, factory: Factory) -> World:
    team = await factory.team(
        admin="admin",
        engineer="engineer",
        viewer="viewer",
        creator="engineer",
        claimer="engineer",
        bystander="engineer",
    )
    other = await factory.team()
    people = {name: team[name] for name in COLUMNS if name in team.members}
    people["owner"] = team.owner
    people["stranger"] = other.owner
    return World(client=client, base=base, people=people, bystander=team["bystander"])


def test_every_route_has_a_row_and_every_row_a_route() -> None:
    routes = route_table(create_app(make_settings("sqlite+aiosqlite:///unused.db")))
    covered = {label for label, _ in MATRIX}
    assert sorted(set(routes) - covered) == [], "routes without a row in MATRIX"
    assert sorted(covered - set(routes)) == [], "rows in MATRIX for routes that don't exist"
    assert all(len(row) == len(COLUMNS) for row in MATRIX.values())


@pytest.mark.slow
async def test_authorization_matrix(app: FastAPI, live: str, factory: Factory) -> None:  # noqa: F811
    routes = route_table(app)
    async with httpx.AsyncClient(base_url=live, timeout=30) as client:
        world = await build_world(client, live, factory)
        # The roles are what their names say (a fixture mistake would void every row).
        for column in ("owner", "admin", "engineer", "viewer", "creator", "claimer"):
            me = await client.get("/api/v1/me", headers=world.headers(column))
            expected_role = column if column in ("owner", "admin", "viewer") else "engineer"
            assert me.json()["role"] == Role(expected_role)
        stranger = await client.get("/api/v1/me", headers=world.headers("stranger"))
        assert stranger.json()["account"]["id"] != me.json()["account"]["id"]

        wrong: list[str] = []
        for (label, kind), row in MATRIX.items():
            for column, expected in zip(COLUMNS, row, strict=True):
                ids = await world.target(label, kind, column)
                got = await status_of(world, label, routes[label], column, ids)
                if got != expected:
                    wrong.append(f"{label} [{kind}] as {column}: expected {expected}, got {got}")
    assert wrong == [], "\n".join(wrong)
