"""AI sessions at the service level, on SQLite and PostgreSQL: who sees a session, and the
session's own record of its first escalation (which hand-offs set through this service)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import AISession, MessageRole, SessionStatus
from lifeline.context import AppContext
from lifeline.db import unit_of_work, utcnow
from lifeline.errors import Forbidden, NotFound
from lifeline.realtime.events import AUDIENCE_ACCOUNT
from tests.support.factories import Factory, Person, Team


@pytest.fixture
async def team(factory: Factory) -> Team:
    return await factory.team(junior="engineer", senior="engineer", admin="admin")


async def _user(db: AsyncSession, person: Person) -> User:
    user = await db.get(User, person.id)
    assert user is not None
    return user


async def _visible_ids(ctx: AppContext, person: Person) -> set[str]:
    async with ctx.sessionmaker() as db:
        user = await _user(db, person)
        rows = await db.scalars(select(AISession.id).where(sessions.visible_to(user)))
        return set(rows)


async def test_a_session_is_its_creators_and_managers_until_escalated(
    ctx: AppContext, team: Team
) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        session = await sessions.create_session(
            db=db, actor=await _user(db, team["junior"]), title="stuck", messages=[]
        )
        assert session.escalated_at is None
        assert await sessions.session_audience(db, session) != AUDIENCE_ACCOUNT
    assert session.id in await _visible_ids(ctx, team["junior"])
    assert session.id in await _visible_ids(ctx, team["admin"])
    assert session.id not in await _visible_ids(ctx, team["senior"])
    with pytest.raises(NotFound):
        async with ctx.sessionmaker() as db:
            await sessions.get_visible_session(
                db=db, user=await _user(db, team["senior"]), session_id=session.id
            )

    first = utcnow()
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        await sessions.mark_escalated(db, session.id, first)
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        # Later moves (a claim, a resolution, a second escalation) keep the first time.
        await sessions.set_status(db, session.id, SessionStatus.RESOLVED, utcnow())
        await sessions.mark_escalated(db, session.id, utcnow())
    async with ctx.sessionmaker() as db:
        row = await db.get(AISession, session.id)
        assert row is not None and row.escalated_at == first
        assert await sessions.session_audience(db, row) == AUDIENCE_ACCOUNT
    assert session.id in await _visible_ids(ctx, team["senior"])


async def test_a_park_shows_its_status_to_who_parked_it_only(ctx: AppContext, team: Team) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        session = await sessions.create_session(
            db=db, actor=await _user(db, team["junior"]), title="stuck", messages=[]
        )
    for _ in range(2):  # parking twice keeps the status from before the first park
        async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
            await sessions.mark_parked(db, session.id, team["junior"].id, utcnow())
    async with ctx.sessionmaker() as db:
        row = await db.get(AISession, session.id)
        assert row is not None
        assert sessions.status_seen_by(row, team["junior"].user) == SessionStatus.PARKED
        assert sessions.status_seen_by(row, team["admin"].user) == SessionStatus.ACTIVE
        admin = await _user(db, team["admin"])
        active = await db.scalars(
            select(AISession.id).where(sessions.status_as_seen_by(admin, SessionStatus.ACTIVE))
        )
        assert session.id in set(active)


async def test_only_the_creator_or_assignee_writes_the_transcript(
    ctx: AppContext, team: Team
) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        session = await sessions.create_session(
            db=db, actor=await _user(db, team["junior"]), title="stuck", messages=[]
        )
    with pytest.raises(Forbidden):
        async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
            await sessions.add_message(
                db=db,
                actor=await _user(db, team["admin"]),
                session_id=session.id,
                role=MessageRole.NOTE,
                content="not mine",
            )
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        await sessions.set_status(
            db, session.id, SessionStatus.CLAIMED, utcnow(), assigned_to=team["senior"].id
        )
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        message = await sessions.add_message(
            db=db,
            actor=await _user(db, team["senior"]),
            session_id=session.id,
            role=MessageRole.NOTE,
            content="on it",
        )
    assert message.author_user_id == team["senior"].id
