"""A Pick Up racing the claimer's demotion or removal still leaves exactly one rightful owner.

The claim and the role change serialise on the claimer's user row, so whichever commits second
sees the first: the escalation ends open (the demotion or removal released it, or the claim was
refused) or claimed by a member who is still an active engineer or better. Never a 5xx, never
held by a viewer or by someone who is gone.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx
import pytest

from lifeline.accounts.models import SENIOR_ROLES, Role, User
from lifeline.ai_sessions.models import AISession
from lifeline.context import AppContext
from lifeline.handoffs.models import Handoff
from tests.support.factories import Factory, Team, escalate, new_session

TRIALS = 30

# Both backends; the race was lost on PostgreSQL (SQLite's write lock serialises writers).
pytestmark = [pytest.mark.slow]

Change = Callable[[httpx.AsyncClient, Team, str], Awaitable[httpx.Response]]


async def demote(client: httpx.AsyncClient, team: Team, user_id: str) -> httpx.Response:
    return await client.patch(
        f"/api/v1/users/{user_id}", headers=team.owner.headers, json={"role": "viewer"}
    )


async def remove(client: httpx.AsyncClient, team: Team, user_id: str) -> httpx.Response:
    return await client.delete(f"/api/v1/users/{user_id}", headers=team.owner.headers)


async def _race(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, change: Change
) -> Counter[str]:
    team = await factory.team(junior="engineer")
    outcomes: Counter[str] = Counter()
    for trial in range(TRIALS):
        claimer = await factory.person(team, key=f"claimer{trial}", role=Role.ENGINEER)
        session = await new_session(client, team["junior"], title=f"race {trial}")
        handoff = await escalate(client, team["junior"], session["id"])
        claim_path = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim"
        claimed, changed = await asyncio.gather(
            client.post(claim_path, headers=claimer.headers),
            change(client, team, claimer.id),
        )
        assert claimed.status_code in (200, 401, 403), claimed.text
        assert changed.status_code in (200, 204), changed.text

        async with ctx.sessionmaker() as db:
            row = await db.get(Handoff, handoff["id"])
            ai_session = await db.get(AISession, session["id"])
            assert row is not None and ai_session is not None
            if row.status == "claimed":
                holder = await db.get(User, row.claimed_by)
                assert holder is not None
                assert holder.deleted_at is None, f"trial {trial}: held by a removed member"
                assert Role(holder.role) in SENIOR_ROLES, f"trial {trial}: held by a viewer"
                assert ai_session.assigned_to == holder.id
            else:
                assert row.status == "open", f"trial {trial}: {row.status}"
                assert row.claimed_by is None
                assert ai_session.status == "escalated" and ai_session.assigned_to is None
        outcomes[f"claim {claimed.status_code}"] += 1
    return outcomes


async def test_claim_racing_a_demotion_never_leaves_it_with_a_viewer(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    outcomes = await _race(client, ctx, factory, demote)
    assert sum(outcomes.values()) == TRIALS


async def test_claim_racing_a_removal_never_fails_nor_leaves_it_with_the_removed(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    outcomes = await _race(client, ctx, factory, remove)
    assert sum(outcomes.values()) == TRIALS
