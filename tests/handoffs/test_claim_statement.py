"""Pick Up is decided by one statement, on SQLite and PostgreSQL alike.

The conditional ``UPDATE … RETURNING`` checks the handoff and the claimer together; what the
claim records (the handoff, the session, the event, the schedule) is exactly what reading the
handoff back shows, and the loser learns who won from a single read (after its UPDATE on
SQLite; on PostgreSQL a look before claiming, outside the transaction, answers it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event, select

from lifeline.ai_sessions.models import AISession
from lifeline.context import AppContext
from lifeline.handoffs.models import Handoff
from lifeline.handoffs.schemas import HandoffRead
from lifeline.policies.models import EscalationSchedule
from lifeline.realtime.models import Event
from tests.support.factories import Factory, new_session

BRIEF = {
    "ask": "Why does the migration deadlock?",
    "tried": "Retrying",
    "error": "deadlock detected",
    "context": {"repo": "acme/api", "branch": "main", "files": ["db.py"]},
}


@contextmanager
def statements(ctx: AppContext) -> Iterator[list[str]]:
    """Every SQL statement the app's engine sends meanwhile, upper-cased."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]).upper())

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)


def touching_handoffs(seen: list[str]) -> list[str]:
    return [s for s in seen if "HANDOFFS" in s.split("WHERE")[0] or s.startswith("UPDATE HANDOFFS")]


async def escalate_with_brief(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    team = await factory.team(junior="engineer", a="engineer", b="admin")
    session = await new_session(client, team["junior"])
    created = await client.post(
        f"/api/v1/ai-sessions/{session['id']}/handoff",
        headers=team["junior"].headers,
        json={"intent": "escalate", "brief": BRIEF},
    )
    assert created.status_code == 201, created.text
    await ctx.tasks.drain()  # the escalation's wave is sent: only the claim is watched next
    return team, session, created.json()


async def test_the_claimed_event_is_the_handoff_as_read_back(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team, session, handoff = await escalate_with_brief(client, ctx, factory)
    url = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim"

    with statements(ctx) as seen:
        won = await client.post(url, headers=team["a"].headers)
    assert won.status_code == 200, won.text

    # The decision is the UPDATE, and nothing reads the handoff after it. On PostgreSQL one
    # look outside the transaction comes first (a claim that finds the escalation already
    # picked up stops there); SQLite's claim takes the write lock and decides at once.
    about = touching_handoffs(seen)
    if ctx.engine.dialect.name == "postgresql":
        look, about = about[0], about[1:]
        assert look.startswith("SELECT HANDOFFS.INTENT"), look
    assert about[0].startswith("UPDATE HANDOFFS") and "RETURNING" in about[0], about
    assert not [s for s in about if s.startswith("SELECT")], about
    if ctx.engine.dialect.name == "postgresql":
        assert "FOR SHARE" in about[0]

    async with ctx.sessionmaker() as db:
        stored = await db.scalar(select(Handoff).where(Handoff.id == handoff["id"]))
        assert stored is not None
        read_back = HandoffRead.model_validate(stored).model_dump(mode="json")
        payloads = (
            await db.scalars(
                select(Event.payload).where(
                    Event.account_id == team.account.id, Event.type == "handoff.claimed"
                )
            )
        ).all()
        ai_session = await db.get(AISession, session["id"])
        schedule = await db.get(EscalationSchedule, handoff["id"])

    assert payloads == [read_back]
    assert won.json() == read_back
    assert read_back["claimed_by"] == team["a"].id and read_back["status"] == "claimed"
    assert read_back["brief"]["ask"] == BRIEF["ask"]
    assert read_back["brief"]["context"]["files"] == ["db.py"]
    # The escalation's first wave went out with it: the claim happened at step 1.
    assert stored.claimed_step == stored.policy_step == 1
    assert ai_session is not None
    assert (ai_session.status, ai_session.assigned_to) == ("claimed", team["a"].id)
    assert schedule is None or schedule.phase == "claimed"


async def test_the_loser_learns_who_won_from_one_read(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team, session, handoff = await escalate_with_brief(client, ctx, factory)
    url = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim"
    assert (await client.post(url, headers=team["a"].headers)).status_code == 200
    await ctx.tasks.drain()

    with statements(ctx) as seen:
        lost = await client.post(url, headers=team["b"].headers)

    assert lost.status_code == 409
    assert lost.json()["detail"] == f"Already picked up by {team['a'].name}"
    assert lost.json()["claimed_by"] == {"id": team["a"].id, "name": team["a"].name}
    about = touching_handoffs(seen)
    # PostgreSQL: the look before the claim finds it picked up, and no UPDATE is tried.
    expected = ["SELECT"] if ctx.engine.dialect.name == "postgresql" else ["UPDATE", "SELECT"]
    assert [s.split()[0] for s in about] == expected, about


async def test_refusals_keep_their_order_and_change_nothing(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team, session, handoff = await escalate_with_brief(client, ctx, factory)
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs"

    missing = await client.post(
        f"{base}/00000000-0000-4000-8000-000000000000/claim", headers=team["a"].headers
    )
    assert missing.status_code == 404
    own = await client.post(f"{base}/{handoff['id']}/claim", headers=team["junior"].headers)
    assert (own.status_code, own.json()["detail"]) == (
        403,
        "You can't pick up your own escalation",
    )
    stranger = await factory.team(x="admin")
    elsewhere = await client.post(f"{base}/{handoff['id']}/claim", headers=stranger["x"].headers)
    assert elsewhere.status_code == 404

    park_session = await new_session(client, team["a"])
    park = await client.post(
        f"/api/v1/ai-sessions/{park_session['id']}/handoff",
        headers=team["a"].headers,
        json={"intent": "park", "note": "later"},
    )
    assert park.status_code == 201
    not_escalation = await client.post(
        f"/api/v1/ai-sessions/{park_session['id']}/handoffs/{park.json()['id']}/claim",
        headers=team["a"].headers,
    )
    assert not_escalation.status_code == 409
    assert not_escalation.json()["detail"] == "Only an escalation can be picked up"

    cancelled = await client.post(f"{base}/{handoff['id']}/cancel", headers=team["junior"].headers)
    assert cancelled.status_code == 200
    late = await client.post(f"{base}/{handoff['id']}/claim", headers=team["a"].headers)
    assert (late.status_code, late.json()["detail"]) == (409, "This escalation is cancelled")

    async with ctx.sessionmaker() as db:
        stored = await db.get(Handoff, handoff["id"])
    assert stored is not None and stored.claimed_by is None
