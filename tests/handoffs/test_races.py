"""Races against a real ``lifeline serve`` process, on SQLite and PostgreSQL.

Many seniors press Pick Up at the same instant; one engineer double-fires Escalate. The database
decides: exactly one claim wins and at most one escalation per session is live.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from sqlalchemy import select

from lifeline.accounts.models import Role
from lifeline.ai_sessions.models import AISession
from lifeline.context import AppContext
from lifeline.handoffs.models import Handoff, Intent
from tests.support.factories import Factory, Person
from tests.support.live import live_server

CLAIMERS = 20
Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@asynccontextmanager
async def serving(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """A live server started and stopped off the event loop: the in-process app sharing the
    database keeps running meanwhile (on SQLite a paused task of it could hold the write lock)."""
    server = live_server(database_url, tmp_path)
    base_url = await asyncio.to_thread(server.__enter__)
    try:
        yield base_url
    finally:
        await asyncio.to_thread(server.__exit__, None, None, None)


async def together(base_url: str, calls: list[Call]) -> list[httpx.Response]:
    """Open one connection per call first, then release every call at the same instant."""
    limits = httpx.Limits(max_connections=len(calls), max_keepalive_connections=len(calls))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        # Warm the pool so the race is between requests, not between TCP handshakes.
        warm = await asyncio.gather(*(client.get("/healthz") for _ in calls))
        assert all(r.status_code == 200 for r in warm)
        start = asyncio.Barrier(len(calls))

        async def one(call: Call) -> httpx.Response:
            await start.wait()  # every request is built and waiting before any is sent
            return await call(client)

        return await asyncio.gather(*(one(call) for call in calls))


async def test_exactly_one_of_many_simultaneous_claimers_wins(
    ctx: AppContext, factory: Factory, tmp_path: Path, database_url: str
) -> None:
    team = await factory.team(junior="engineer")
    seniors: list[Person] = []
    for n in range(CLAIMERS):
        role = Role.ADMIN if n % 4 == 0 else Role.ENGINEER
        seniors.append(await factory.person(team, key=f"senior{n}", role=role))

    async with serving(database_url, tmp_path) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
            ready = await api.get("/readyz")
            assert ready.json() == {"status": "ok", "database": "ok"}
            created = await api.post(
                "/api/v1/ai-sessions", headers=team["junior"].headers, json={"title": "race"}
            )
            session_id = created.json()["id"]
            escalated = await api.post(
                f"/api/v1/ai-sessions/{session_id}/handoff",
                headers=team["junior"].headers,
                json={"intent": "escalate", "note": "who takes it?"},
            )
            assert escalated.status_code == 201, escalated.text
            handoff_id = escalated.json()["id"]
        claim_path = f"/api/v1/ai-sessions/{session_id}/handoffs/{handoff_id}/claim"

        def claim(person: Person) -> Call:
            return lambda client: client.post(claim_path, headers=person.headers)

        # The escalator joins the stampede too, and must never win.
        responses = await together(base_url, [claim(p) for p in [*seniors, team["junior"]]])

    codes = Counter(r.status_code for r in responses)
    assert codes == {200: 1, 409: CLAIMERS - 1, 403: 1}, [r.text for r in responses]
    assert responses[-1].status_code == 403
    (winning,) = [r for r in responses if r.status_code == 200]
    winner_id = winning.json()["claimed_by"]
    winner = next(p for p in seniors if p.id == winner_id)
    for response in responses:
        if response.status_code == 409:
            body = response.json()
            assert body["claimed_by"] == {"id": winner.id, "name": winner.name}
            assert winner.name in body["detail"]

    async with ctx.sessionmaker() as db:
        handoff = await db.get(Handoff, handoff_id)
        session = await db.get(AISession, session_id)
    assert handoff is not None and session is not None
    assert handoff.status == "claimed" and handoff.claimed_by == winner.id
    assert handoff.claimed_at is not None
    assert session.assigned_to == winner.id and session.status == "claimed"


async def test_simultaneous_escalations_of_one_session_yield_one(
    ctx: AppContext, factory: Factory, tmp_path: Path, database_url: str
) -> None:
    team = await factory.team(junior="engineer")
    async with serving(database_url, tmp_path) as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as api:
            created = await api.post(
                "/api/v1/ai-sessions", headers=team["junior"].headers, json={"title": "dup"}
            )
            session_id = created.json()["id"]

        def escalate(n: int) -> Call:
            return lambda client: client.post(
                f"/api/v1/ai-sessions/{session_id}/handoff",
                headers=team["junior"].headers,
                json={"intent": "escalate", "note": f"click {n}"},
            )

        responses = await together(base_url, [escalate(n) for n in range(12)])

    codes = Counter(r.status_code for r in responses)
    assert codes == {201: 1, 409: 11}, [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["detail"] == (
                "An escalation is already open or claimed for this session"
            )
    async with ctx.sessionmaker() as db:
        rows = (
            await db.scalars(
                select(Handoff).where(
                    Handoff.session_id == session_id, Handoff.intent == Intent.ESCALATE
                )
            )
        ).all()
    assert len(rows) == 1 and rows[0].status == "open"
