"""The hand-off state machine at the service level, on SQLite and PostgreSQL: every transition
and every guard, called the way routers, the worker and agents call it (one unit of work each).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import Role, User
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import AISession, SessionStatus
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.errors import Conflict, Forbidden, LifelineError
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent
from lifeline.members import service as members
from lifeline.realtime.models import Event
from tests.support.factories import Factory, Person, Team

T = TypeVar("T")


class Desk:
    """Runs one service call per committed unit of work, as ``person``."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.email_cap = ctx.settings.email_cap_per_hour

    async def run(self, person: Person, work: Callable[[AsyncSession, User], Awaitable[T]]) -> T:
        async with unit_of_work(self.ctx.sessionmaker, self.ctx.after_commit) as db:
            actor = await db.get(User, person.id)
            assert actor is not None
            return await work(db, actor)

    async def session(self, person: Person) -> AISession:
        return await self.run(
            person,
            lambda db, actor: sessions.create_session(
                db=db, actor=actor, title="stuck", messages=[]
            ),
        )

    async def hand_off(self, person: Person, session_id: str, intent: Intent) -> Handoff:
        return await self.run(
            person,
            lambda db, actor: handoffs.create_handoff(
                db=db,
                actor=actor,
                session_id=session_id,
                intent=intent,
                note="help",
                email_cap=self.email_cap,
            ),
        )

    async def move(self, person: Person, transition: str, handoff: Handoff) -> Handoff:
        action = getattr(handoffs, f"{transition}_handoff")
        # A release writes a wave; the other transitions write none.
        extra = {"email_cap": self.email_cap} if transition == "release" else {}
        return await self.run(
            person,
            lambda db, actor: action(
                db=db, actor=actor, session_id=handoff.session_id, handoff_id=handoff.id, **extra
            ),
        )

    async def refused(
        self, error: type[LifelineError], person: Person, transition: str, handoff: Handoff
    ) -> str:
        with pytest.raises(error) as caught:
            await self.move(person, transition, handoff)
        return caught.value.detail

    async def session_row(self, session_id: str) -> AISession:
        async with self.ctx.sessionmaker() as db:
            row = await db.get(AISession, session_id)
            assert row is not None
            return row

    async def events(self, handoff_id: str) -> list[str]:
        async with self.ctx.sessionmaker() as db:
            rows = await db.scalars(select(Event).order_by(Event.id))
            return [e.type for e in rows if e.payload.get("id") == handoff_id]


@pytest.fixture
def desk(ctx: AppContext) -> Desk:
    return Desk(ctx)


@pytest.fixture
async def team(factory: Factory) -> Team:
    return await factory.team(junior="engineer", senior="engineer", admin="admin", viewer="viewer")


async def test_escalate_claim_resolve(desk: Desk, team: Team) -> None:
    session = await desk.session(team["junior"])
    handoff = await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    assert handoff.status == HandoffStatus.OPEN
    row = await desk.session_row(session.id)
    assert row.status == SessionStatus.ESCALATED and row.escalated_at is not None

    claimed = await desk.move(team["senior"], "claim", handoff)
    assert claimed.status == HandoffStatus.CLAIMED and claimed.claimed_by == team["senior"].id
    row = await desk.session_row(session.id)
    assert row.status == SessionStatus.CLAIMED and row.assigned_to == team["senior"].id

    resolved = await desk.move(team["senior"], "resolve", handoff)
    assert resolved.status == HandoffStatus.RESOLVED
    row = await desk.session_row(session.id)
    assert row.status == SessionStatus.RESOLVED and row.escalated_at is not None
    assert await desk.events(handoff.id) == [
        "handoff.escalated",
        "handoff.claimed",
        "handoff.resolved",
    ]


async def test_claim_guards(desk: Desk, team: Team) -> None:
    session = await desk.session(team["junior"])
    handoff = await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    own = await desk.refused(Forbidden, team["junior"], "claim", handoff)
    assert own == "You can't pick up your own escalation"
    viewer = await desk.refused(Forbidden, team["viewer"], "claim", handoff)
    assert viewer == "Engineer or admin access required"
    await desk.move(team["senior"], "claim", handoff)
    second = await desk.refused(Conflict, team["admin"], "claim", handoff)
    assert second == f"Already picked up by {team['senior'].name}"

    parked_session = await desk.session(team["junior"])
    park = await desk.hand_off(team["junior"], parked_session.id, Intent.PARK)
    # Someone else's park is invisible: not found, not a conflict.
    with pytest.raises(LifelineError) as caught:
        await desk.move(team["senior"], "claim", park)
    assert caught.value.status_code == 404
    mine = await desk.refused(Conflict, team["junior"], "claim", park)
    assert mine == "Only an escalation can be picked up"


async def test_release_requeues_and_only_the_claimer_or_owner_may(desk: Desk, team: Team) -> None:
    session = await desk.session(team["junior"])
    handoff = await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    open_release = await desk.refused(Forbidden, team["senior"], "release", handoff)
    assert open_release == "Only the engineer who picked it up can release it"
    await desk.move(team["senior"], "claim", handoff)
    other = await desk.refused(Forbidden, team["admin"], "release", handoff)
    assert other == "Only the engineer who picked it up can release it"

    released = await desk.move(team["senior"], "release", handoff)
    assert released.status == HandoffStatus.OPEN and released.claimed_by is None
    assert released.policy_round == 1
    row = await desk.session_row(session.id)
    assert row.status == SessionStatus.ESCALATED and row.assigned_to is None

    # The owner may release whoever holds it; with nobody holding it, it's a conflict.
    await desk.move(team["admin"], "claim", handoff)
    by_owner = await desk.move(team.owner, "release", handoff)
    assert by_owner.status == HandoffStatus.OPEN and by_owner.policy_round == 2
    nobody = await desk.refused(Conflict, team.owner, "release", handoff)
    assert nobody == "This escalation is open"


async def test_resolve_guards(desk: Desk, team: Team) -> None:
    session = await desk.session(team["junior"])
    handoff = await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    unclaimed = await desk.refused(Forbidden, team["senior"], "resolve", handoff)
    assert unclaimed == "Only the engineer who picked it up can resolve it"
    await desk.move(team["senior"], "claim", handoff)
    other = await desk.refused(Forbidden, team["admin"], "resolve", handoff)
    assert other == "Only the engineer who picked it up can resolve it"
    await desk.move(team["senior"], "resolve", handoff)
    again = await desk.refused(Conflict, team["senior"], "resolve", handoff)
    assert again == "This handoff is resolved"


async def test_cancel_open_or_claimed_by_the_escalator_only(desk: Desk, team: Team) -> None:
    session = await desk.session(team["junior"])
    handoff = await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    await desk.move(team["senior"], "claim", handoff)
    other = await desk.refused(Forbidden, team["senior"], "cancel", handoff)
    assert other == "Only the engineer who escalated it can cancel it"
    cancelled = await desk.move(team["junior"], "cancel", handoff)
    assert cancelled.status == HandoffStatus.CANCELLED
    row = await desk.session_row(session.id)
    assert row.status == SessionStatus.ACTIVE and row.assigned_to is None
    again = await desk.refused(Conflict, team["junior"], "cancel", handoff)
    assert again == "This handoff is cancelled"
    # Once cancelled, nothing else moves it.
    assert await desk.refused(Conflict, team["senior"], "claim", handoff) == (
        "This escalation is cancelled"
    )

    # A new escalation of the same session may follow; the session stays visible to all.
    second = await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    assert second.status == HandoffStatus.OPEN


async def test_park_is_private_made_once_and_yields_to_an_escalation(
    desk: Desk, team: Team
) -> None:
    session = await desk.session(team["junior"])
    park = await desk.hand_off(team["junior"], session.id, Intent.PARK)
    row = await desk.session_row(session.id)
    assert row.status == SessionStatus.PARKED and row.escalated_at is None
    assert sessions.status_seen_by(row, team["junior"].user) == SessionStatus.PARKED
    assert sessions.status_seen_by(row, team["senior"].user) == SessionStatus.ACTIVE
    with pytest.raises(Conflict, match="You have already parked this session"):
        await desk.hand_off(team["junior"], session.id, Intent.PARK)

    escalation = await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    async with desk.ctx.sessionmaker() as db:
        superseded = await db.get(Handoff, park.id)
        assert superseded is not None and superseded.status == HandoffStatus.RESOLVED
    with pytest.raises(Conflict, match="already open or claimed"):
        await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    with pytest.raises(Conflict, match="already open or claimed"):
        await desk.hand_off(team["junior"], session.id, Intent.PARK)
    assert escalation.status == HandoffStatus.OPEN


async def test_resolving_a_park_resumes_the_session(desk: Desk, team: Team) -> None:
    session = await desk.session(team["junior"])
    park = await desk.hand_off(team["junior"], session.id, Intent.PARK)
    resolved = await desk.move(team["junior"], "resolve", park)
    assert resolved.status == HandoffStatus.RESOLVED
    row = await desk.session_row(session.id)
    assert row.status == SessionStatus.ACTIVE


async def test_only_the_sessions_owner_hands_it_off(desk: Desk, team: Team) -> None:
    session = await desk.session(team["junior"])
    await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    # Escalated: the senior sees it now, but it still isn't theirs to hand off.
    with pytest.raises(Forbidden, match="creator or assignee"):
        await desk.hand_off(team["senior"], session.id, Intent.PARK)


@pytest.mark.parametrize("change", ["demote", "remove"])
async def test_a_member_who_may_no_longer_hold_work_gives_it_back(
    desk: Desk, team: Team, change: str
) -> None:
    session = await desk.session(team["junior"])
    handoff = await desk.hand_off(team["junior"], session.id, Intent.ESCALATE)
    await desk.move(team["senior"], "claim", handoff)
    senior_id = team["senior"].id
    if change == "demote":
        await desk.run(
            team.owner,
            lambda db, actor: members.update_member(
                db=db,
                actor=actor,
                user_id=senior_id,
                role=Role.VIEWER,
                name=None,
                email_cap=desk.email_cap,
            ),
        )
    else:
        await desk.run(
            team.owner,
            lambda db, actor: members.remove_member(
                db=db, actor=actor, user_id=senior_id, email_cap=desk.email_cap
            ),
        )
    async with desk.ctx.sessionmaker() as db:
        back = await db.get(Handoff, handoff.id)
        assert back is not None
        assert back.status == HandoffStatus.OPEN and back.claimed_by is None
    row = await desk.session_row(session.id)
    assert row.status == SessionStatus.ESCALATED and row.assigned_to is None
