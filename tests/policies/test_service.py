"""Escalation policies at the service level, on SQLite and PostgreSQL: the default, a PUT's
checks of the people it names, the reminder shortcut, and that each account has its own."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts import service as accounts
from lifeline.accounts.models import User
from lifeline.ai_sessions import service as sessions
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.errors import Unprocessable
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Intent
from lifeline.policies import service as policies
from lifeline.policies.models import EscalationPolicyRecord
from lifeline.policies.schemas import EscalationPolicy, default_policy
from tests.support.factories import Factory, Team


def policy(*steps: dict[str, Any], **rest: Any) -> EscalationPolicy:
    return EscalationPolicy.model_validate({"steps": list(steps), **rest})


def step(after: int, *, roles: list[str] | None = None, users: list[str] | None = None) -> Any:
    return {
        "after_minutes": after,
        "notify": {"roles": roles or [], "users": users or []},
        "channels": ["push", "email"],
    }


@pytest.fixture
async def team(factory: Factory) -> Team:
    return await factory.team(senior="engineer", admin="admin", viewer="viewer")


async def _get(ctx: AppContext, account_id: str) -> EscalationPolicy:
    async with ctx.sessionmaker() as db:
        return await policies.get_policy(db=db, account_id=account_id)


async def _put(ctx: AppContext, team: Team, new: EscalationPolicy) -> EscalationPolicy:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        return await policies.put_policy(
            db=db, account_id=team.account.id, actor_id=team.owner.id, policy=new
        )


async def _refused(ctx: AppContext, team: Team, new: EscalationPolicy) -> str:
    with pytest.raises(Unprocessable) as caught:
        await _put(ctx, team, new)
    return caught.value.detail


async def test_an_account_never_edited_has_the_default_policy(ctx: AppContext, team: Team) -> None:
    assert await _get(ctx, team.account.id) == default_policy()
    async with ctx.sessionmaker() as db:
        assert await db.get(EscalationPolicyRecord, team.account.id) is None


async def test_a_put_replaces_the_whole_policy_and_says_who_and_when(
    ctx: AppContext, factory: Factory, team: Team
) -> None:
    other = await factory.team()
    first = policy(step(0, roles=["admin"]), step(5, users=[team["senior"].id]), repeat=2)
    assert await _put(ctx, team, first) == first
    assert await _get(ctx, team.account.id) == first
    async with ctx.sessionmaker() as db:
        record = await db.get(EscalationPolicyRecord, team.account.id)
        assert record is not None and record.updated_by == team.owner.id
        written = record.updated_at

    second = policy(step(0, roles=["engineer"]), expire_after_minutes=30)
    await _put(ctx, team, second)
    assert await _get(ctx, team.account.id) == second
    async with ctx.sessionmaker() as db:
        record = await db.get(EscalationPolicyRecord, team.account.id)
        assert record is not None and record.updated_at >= written
        # Omitted optional fields took their defaults: the first policy's repeat is gone.
        assert record.policy["repeat"] == 0
    # Another account is untouched.
    assert await _get(ctx, other.account.id) == default_policy()


async def test_named_people_must_be_active_non_viewer_members_of_the_account(
    ctx: AppContext, factory: Factory, team: Team
) -> None:
    stranger = (await factory.team(eng="engineer"))["eng"]
    detail = await _refused(ctx, team, policy(step(0, roles=["admin"], users=[stranger.id])))
    assert detail == f"steps.0.notify.users.0: {stranger.id} is not a member of this account"

    viewer = team["viewer"].id
    detail = await _refused(
        ctx, team, policy(step(0, roles=["admin"]), step(3, users=[team["admin"].id, viewer]))
    )
    assert detail == (f"steps.1.notify.users.1: {viewer} is a viewer; viewers are never notified")

    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        owner = await db.get(User, team.owner.id)
        assert owner is not None
        await accounts.soft_delete_user(db=db, actor=owner, user_id=team["senior"].id)
    gone = team["senior"].id
    detail = await _refused(ctx, team, policy(step(0, users=[gone])))
    assert detail == f"steps.0.notify.users.0: {gone} is not a member of this account"
    # Nothing refused was stored.
    assert await _get(ctx, team.account.id) == default_policy()


def test_the_reminder_is_the_second_step() -> None:
    assert policies.reminder_minutes(default_policy(7)) == 7
    assert policies.reminder_minutes(policy(step(0, roles=["admin"]))) is None


async def test_setting_the_reminder_moves_the_second_step_or_adds_one(
    ctx: AppContext, team: Team
) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        moved = await policies.set_reminder_minutes(
            db=db, account_id=team.account.id, actor_id=team.owner.id, minutes=25
        )
    assert [s.after_minutes for s in moved.steps] == [0, 25]
    assert moved.steps[1].notify == default_policy().steps[1].notify

    single = policy(step(2, roles=["admin"]), expire_after_minutes=90)
    await _put(ctx, team, single)
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        grown = await policies.set_reminder_minutes(
            db=db, account_id=team.account.id, actor_id=team.owner.id, minutes=15
        )
    # The new step tells the same people on the same channels; the rest of the policy stays.
    assert [s.after_minutes for s in grown.steps] == [2, 15]
    assert grown.steps[1].notify == grown.steps[0].notify
    assert grown.steps[1].channels == grown.steps[0].channels
    assert grown.expire_after_minutes == 90
    assert await _get(ctx, team.account.id) == grown


async def test_a_reminder_that_would_come_after_later_steps_is_refused(
    ctx: AppContext, team: Team
) -> None:
    three = policy(step(0, roles=["admin"]), step(5, roles=["admin"]), step(10, roles=["owner"]))
    await _put(ctx, team, three)
    with pytest.raises(Unprocessable) as caught:
        async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
            await policies.set_reminder_minutes(
                db=db, account_id=team.account.id, actor_id=team.owner.id, minutes=30
            )
    assert caught.value.detail == (
        "reminder_minutes: the policy's later steps come before it; edit the policy"
    )
    assert await _get(ctx, team.account.id) == three


async def test_an_escalation_keeps_the_policy_it_was_raised_under(
    ctx: AppContext, team: Team
) -> None:
    async def escalate(db: AsyncSession) -> str:
        senior = await db.get(User, team["senior"].id)
        assert senior is not None
        session = await sessions.create_session(db=db, actor=senior, title="x", messages=[])
        handoff = await handoffs.create_handoff(
            db=db,
            actor=senior,
            session_id=session.id,
            intent=Intent.ESCALATE,
            note="help",
            email_cap=ctx.settings.email_cap_per_hour,
        )
        return handoff.id

    before = policy(step(0, roles=["admin"]), step(9, roles=["owner"]))
    await _put(ctx, team, before)
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        handoff_id = await escalate(db)
    await _put(ctx, team, policy(step(1, roles=["engineer"])))
    async with ctx.sessionmaker() as db:
        handoff = await handoffs.find_handoff(
            db=db, user=await _owner(db, team), handoff_id=handoff_id
        )
        assert handoffs.policy_of(handoff) == before


async def _owner(db: AsyncSession, team: Team) -> User:
    owner = await db.get(User, team.owner.id)
    assert owner is not None
    return owner
