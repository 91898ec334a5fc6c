"""The database itself keeps a session to one live escalation, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from lifeline.ai_sessions.models import AISession
from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent
from tests.support.factories import Factory


async def _session(ctx: AppContext, account_id: str, user_id: str) -> str:
    async with ctx.sessionmaker() as db, db.begin():
        session = AISession(account_id=account_id, created_by=user_id, title="constraint")
        db.add(session)
    return session.id


def _handoff(session_id: str, account_id: str, user_id: str, **values: str) -> Handoff:
    now = utcnow()
    fields: dict[str, object] = {
        "session_id": session_id,
        "account_id": account_id,
        "intent": Intent.ESCALATE,
        "status": HandoffStatus.OPEN,
        "created_by": user_id,
        "created_at": now,
        "queued_at": now,
        "note": "",
    }
    fields.update(values)
    return Handoff(**fields)


@pytest.mark.parametrize(
    ("first", "second"),
    [("open", "open"), ("open", "claimed"), ("claimed", "open"), ("claimed", "claimed")],
)
async def test_a_second_live_escalation_row_is_refused(
    ctx: AppContext, factory: Factory, first: str, second: str
) -> None:
    team = await factory.team()
    account_id, user_id = team.account.id, team.owner.id
    session_id = await _session(ctx, account_id, user_id)
    async with ctx.sessionmaker() as db, db.begin():
        db.add(_handoff(session_id, account_id, user_id, status=first))

    with pytest.raises(IntegrityError):
        async with ctx.sessionmaker() as db, db.begin():
            db.add(_handoff(session_id, account_id, user_id, status=second))

    async with ctx.sessionmaker() as db:
        count = await db.scalar(
            select(func.count()).select_from(Handoff).where(Handoff.session_id == session_id)
        )
    assert count == 1


async def test_finished_escalations_and_parks_are_not_limited(
    ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team()
    account_id, user_id = team.account.id, team.owner.id
    session_id = await _session(ctx, account_id, user_id)
    async with ctx.sessionmaker() as db, db.begin():
        db.add_all(
            [
                _handoff(session_id, account_id, user_id, status="resolved"),
                _handoff(session_id, account_id, user_id, status="cancelled"),
                _handoff(session_id, account_id, user_id, status="resolved"),
                _handoff(session_id, account_id, user_id, intent="park"),
                _handoff(session_id, account_id, user_id, intent="park"),
                _handoff(session_id, account_id, user_id, status="open"),
            ]
        )
    # A second session has its own allowance.
    other_id = await _session(ctx, account_id, user_id)
    async with ctx.sessionmaker() as db, db.begin():
        db.add(_handoff(other_id, account_id, user_id, status="claimed"))
    async with ctx.sessionmaker() as db:
        count = await db.scalar(select(func.count()).select_from(Handoff))
    assert count == 7
