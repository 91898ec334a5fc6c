"""Accounts at the service level, on SQLite and PostgreSQL: who may manage whom, the last
owner, and credentials. (Releasing a demoted or removed member's pick-ups is
``members.service``'s, tested with the hand-off state machine.)"""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.accounts import service as accounts
from lifeline.accounts.models import Role, User, is_manager, is_senior
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.errors import Conflict, Forbidden, Unauthorized
from tests.support.factories import Factory, Person, Team


@pytest.fixture
async def team(factory: Factory) -> Team:
    return await factory.team(admin="admin", engineer="engineer", viewer="viewer")


async def _user(db: AsyncSession, person: Person) -> User:
    user = await db.get(User, person.id)
    assert user is not None
    return user


def test_role_predicates() -> None:
    assert [is_senior(r) for r in Role] == [True, True, True, False]
    assert [is_manager(r) for r in Role] == [True, True, False, False]


async def _invite(db: AsyncSession, by: Person, email: str, role: Role) -> tuple[User, str]:
    actor = await _user(db, by)
    return await accounts.invite_user(
        db=db, actor=actor, email=email, name=None, role=role, password=None
    )


async def test_who_may_invite_and_make_owners(ctx: AppContext, team: Team) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        with pytest.raises(Forbidden, match="Admin or owner access required"):
            await _invite(db, team["engineer"], "new@example.com", Role.VIEWER)
        with pytest.raises(Forbidden, match="Only an owner"):
            await _invite(db, team["admin"], "boss@example.com", Role.OWNER)
        user, secret = await _invite(db, team["admin"], "New@Example.com", Role.ENGINEER)
        assert user.email == "new@example.com" and secret
        with pytest.raises(Conflict):
            await _invite(db, team["admin"], "new@example.com", Role.VIEWER)


async def test_the_last_owner_stays_and_nobody_removes_themselves(
    ctx: AppContext, team: Team
) -> None:
    owner_id = team.owner.id
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        owner = await _user(db, team.owner)
        with pytest.raises(Conflict, match="last owner can't be demoted"):
            await accounts.update_user(
                db=db, actor=owner, user_id=owner_id, role=Role.ADMIN, name=None
            )
        with pytest.raises(Conflict, match="You can't remove yourself"):
            await accounts.soft_delete_user(db=db, actor=owner, user_id=owner_id)
        with pytest.raises(Forbidden, match="Only an owner"):
            await accounts.update_user(
                db=db,
                actor=await _user(db, team["admin"]),
                user_id=owner_id,
                role=Role.VIEWER,
                name=None,
            )


async def test_a_removed_member_can_no_longer_authenticate(ctx: AppContext, team: Team) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        user, _token = await accounts.authenticate_token(db=db, secret=team["viewer"].token)
        assert user.id == team["viewer"].id
        await accounts.soft_delete_user(
            db=db, actor=await _user(db, team.owner), user_id=team["viewer"].id
        )
        drops = [e for e in after_commit.take(db) if isinstance(e, after_commit.DropConnections)]
        assert [d.user_id for d in drops] == [team["viewer"].id]
    async with ctx.sessionmaker() as db:
        with pytest.raises(Unauthorized):
            await accounts.authenticate_token(db=db, secret=team["viewer"].token)
        with pytest.raises(Unauthorized):
            await accounts.authenticate_token(db=db, secret="not-a-token")


async def test_a_revoked_token_closes_its_connections(ctx: AppContext, team: Team) -> None:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        engineer = await _user(db, team["engineer"])
        token, secret = await accounts.create_token(db=db, user=engineer, name="laptop")
        await accounts.revoke_token(db=db, user=engineer, token_id=token.id)
        effects = after_commit.take(db)
        assert effects == [after_commit.DropConnections(user_id=engineer.id, token_id=token.id)]
    async with ctx.sessionmaker() as db:
        with pytest.raises(Unauthorized):
            await accounts.authenticate_token(db=db, secret=secret)
