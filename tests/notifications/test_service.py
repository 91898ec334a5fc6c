"""Reading a handoff's delivery records at the service level, on SQLite and PostgreSQL: who may
read them, in what order, page by page, and the rows that have no recipient."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.ai_sessions import service as sessions
from lifeline.context import AppContext
from lifeline.db import unit_of_work, utcnow
from lifeline.errors import Forbidden, NotFound
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, Intent
from lifeline.integrations import webhooks
from lifeline.notifications import outbox
from lifeline.notifications import service as notifications
from lifeline.notifications.models import Delivery
from tests.support.factories import Factory, Person, Team


@pytest.fixture
async def team(factory: Factory) -> Team:
    return await factory.team(junior="engineer", senior="engineer", admin="admin", viewer="viewer")


async def _user(db: AsyncSession, person: Person) -> User:
    user = await db.get(User, person.id)
    assert user is not None
    return user


async def _hand_off(ctx: AppContext, person: Person, intent: Intent) -> Handoff:
    # Nobody sends these rows: the test reads them as written (the wave expanded, not sent).
    runner = AfterCommitRunner(TaskSet())
    async with unit_of_work(ctx.sessionmaker, runner) as db:
        actor = await _user(db, person)
        session = await sessions.create_session(db=db, actor=actor, title="stuck", messages=[])
        handoff = await handoffs.create_handoff(
            db=db,
            actor=actor,
            session_id=session.id,
            intent=intent,
            note="help",
            email_cap=ctx.settings.email_cap_per_hour,
        )
    async with unit_of_work(ctx.sessionmaker, runner) as db:
        await outbox.expand_waves(db=db, email_cap=ctx.settings.email_cap_per_hour)
    return handoff


async def _read(
    ctx: AppContext, person: Person, handoff_id: str, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[tuple[Delivery, User | None]], str | None]:
    async with ctx.sessionmaker() as db:
        return await notifications.list_deliveries(
            db=db, user=await _user(db, person), handoff_id=handoff_id, cursor=cursor, limit=limit
        )


async def test_the_escalator_admins_and_the_owner_read_the_trail(
    ctx: AppContext, team: Team
) -> None:
    handoff = await _hand_off(ctx, team["junior"], Intent.ESCALATE)
    seen = {}
    for reader in (team["junior"], team["admin"], team.owner):
        rows, next_cursor = await _read(ctx, reader, handoff.id)
        assert next_cursor is None
        seen[reader.id] = [(d.id, d.recipient_user_id) for d, _ in rows]
    assert len(set(map(tuple, seen.values()))) == 1
    rows, _ = await _read(ctx, team.owner, handoff.id)
    # Every engineer, admin and owner but the escalator, on push and email; never the viewer.
    told = {team.owner.id, team["senior"].id, team["admin"].id}
    assert {(d.recipient_user_id, d.channel) for d, _ in rows} == {
        (who, channel) for who in told for channel in ("push", "email")
    }
    assert all(user is not None and user.id == d.recipient_user_id for d, user in rows)
    assert [(d.created_at, d.id) for d, _ in rows] == sorted((d.created_at, d.id) for d, _ in rows)


@pytest.mark.parametrize("reader", ["senior", "viewer"])
async def test_other_members_of_the_account_may_not(
    ctx: AppContext, team: Team, reader: str
) -> None:
    handoff = await _hand_off(ctx, team["junior"], Intent.ESCALATE)
    with pytest.raises(Forbidden) as caught:
        await _read(ctx, team[reader], handoff.id)
    assert caught.value.detail == "Admin, owner or the escalator access required"


async def test_another_accounts_handoff_is_not_found_even_for_its_owner(
    ctx: AppContext, factory: Factory, team: Team
) -> None:
    handoff = await _hand_off(ctx, team["junior"], Intent.ESCALATE)
    other = await factory.team(admin="admin")
    for stranger in (other.owner, other["admin"]):
        with pytest.raises(NotFound) as caught:
            await _read(ctx, stranger, handoff.id)
        assert caught.value.detail == "Handoff not found"
    with pytest.raises(NotFound):
        await _read(ctx, team.owner, "no-such-handoff")


async def test_a_park_is_its_creators_alone_and_has_no_deliveries(
    ctx: AppContext, team: Team
) -> None:
    park = await _hand_off(ctx, team["junior"], Intent.PARK)
    assert await _read(ctx, team["junior"], park.id) == ([], None)
    # Not even a manager of the account learns that it exists.
    for manager in (team["admin"], team.owner):
        with pytest.raises(NotFound):
            await _read(ctx, manager, park.id)


async def test_pages_follow_one_another_without_gaps_or_repeats(
    ctx: AppContext, team: Team
) -> None:
    handoff = await _hand_off(ctx, team["junior"], Intent.ESCALATE)
    everything, _ = await _read(ctx, team.owner, handoff.id)
    assert len(everything) == 6
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        rows, cursor = await _read(ctx, team.owner, handoff.id, limit=4, cursor=cursor)
        pages.append([d.id for d, _ in rows])
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 2]
    assert [i for p in pages for i in p] == [d.id for d, _ in everything]


async def test_webhook_rows_about_the_handoff_are_listed_without_a_recipient(
    ctx: AppContext, team: Team
) -> None:
    handoff = await _hand_off(ctx, team["junior"], Intent.ESCALATE)
    async with unit_of_work(ctx.sessionmaker, AfterCommitRunner(TaskSet())) as db:
        endpoint = await webhooks.create_endpoint(
            db=db,
            actor=await _user(db, team.owner),
            url="http://127.0.0.1:9/hook",
            event_types=["handoff.escalated"],
            description="",
            enabled=True,
            allow_private=True,
        )
        db.add(
            webhooks.webhook_delivery(
                endpoint_id=endpoint.id,
                account_id=team.account.id,
                event_key="event:1",
                payload={"type": "handoff.escalated"},
                handoff_id=handoff.id,
                due=utcnow(),
            )
        )
    rows, _ = await _read(ctx, team["admin"], handoff.id)
    hooks = [(d, user) for d, user in rows if d.channel == "webhook"]
    assert len(hooks) == 1
    delivery, user = hooks[0]
    assert user is None and delivery.recipient_user_id is None
    assert delivery.endpoint_id == endpoint.id
