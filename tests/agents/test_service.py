"""The agents' service called directly, on SQLite and PostgreSQL: escalating for an agent (once
per conversation), what a wait answers, and what another account or a viewer gets."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.agents import service
from lifeline.agents.schemas import EscalateResult, TranscriptEntry
from lifeline.ai_sessions.models import AISession, MessageRole
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.errors import Forbidden, LifelineError
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import HandoffStatus
from lifeline.handoffs.schemas import Brief, BriefContext
from tests.support.factories import Factory, Person, Team

T = TypeVar("T")
BASE = "https://lifeline.example"


@pytest.fixture
async def team(factory: Factory) -> Team:
    return await factory.team(agent="engineer", senior="engineer", viewer="viewer")


async def run(
    ctx: AppContext, person: Person, work: Callable[[AsyncSession, User], Awaitable[T]]
) -> T:
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        actor = await db.get(User, person.id)
        assert actor is not None
        return await work(db, actor)


async def escalate(
    ctx: AppContext, person: Person, *, external_id: str | None = "conv-1", **kw: Any
) -> EscalateResult:
    brief = Brief(
        ask="Why does the migration lock the table?",
        tried="ran it twice",
        context=BriefContext(repo="acme/api", branch="main", files=["db.py"]),
    )
    return await run(
        ctx,
        person,
        lambda db, actor: service.escalate(
            db=db,
            actor=actor,
            base_url=BASE,
            brief=brief,
            title=kw.get("title"),
            transcript=[TranscriptEntry(role="user", content="the migration hangs")],
            session_id=kw.get("session_id"),
            external_id=external_id,
            client_name="claude-code",
            email_cap=ctx.settings.email_cap_per_hour,
        ),
    )


async def move(ctx: AppContext, person: Person, transition: str, result: EscalateResult) -> None:
    action = getattr(handoffs, f"{transition}_handoff")
    await run(
        ctx,
        person,
        lambda db, actor: action(
            db=db, actor=actor, session_id=result.session_id, handoff_id=result.handoff_id
        ),
    )


async def test_one_conversation_is_one_session_and_one_live_escalation(
    ctx: AppContext, team: Team
) -> None:
    first = await escalate(ctx, team["agent"])
    assert first.created and first.status == "open"
    assert first.url == f"{BASE}/sessions/{first.session_id}"
    async with ctx.sessionmaker() as db:
        session = await db.get(AISession, first.session_id)
        assert session is not None
        assert (session.source, session.external_id, session.client_name) == (
            "mcp",
            "conv-1",
            "claude-code",
        )
        # No title given: the ask's first line is the title.
        assert session.title == "Why does the migration lock the table?"

    again = await escalate(ctx, team["agent"])
    assert (again.handoff_id, again.created) == (first.handoff_id, False)

    # Once it has ended, the same conversation escalates anew, on the same session.
    await move(ctx, team["agent"], "cancel", first)
    later = await escalate(ctx, team["agent"])
    assert later.created and later.session_id == first.session_id
    assert later.handoff_id != first.handoff_id

    # Another conversation is another session.
    other = await escalate(ctx, team["agent"], external_id="conv-2")
    assert other.session_id != first.session_id


async def test_a_viewer_cannot_escalate_and_another_account_is_not_found(
    ctx: AppContext, factory: Factory, team: Team
) -> None:
    with pytest.raises(Forbidden) as refused:
        await escalate(ctx, team["viewer"])
    assert refused.value.detail == "Engineer or admin access required: a viewer can't escalate"

    mine = await escalate(ctx, team["agent"])
    stranger = (await factory.team(eve="engineer"))["eve"]
    with pytest.raises(LifelineError) as caught:
        await escalate(ctx, stranger, external_id=None, session_id=mine.session_id)
    assert caught.value.status_code == 404
    # The same external id in another account is that account's own conversation.
    theirs = await escalate(ctx, stranger)
    assert theirs.created and theirs.session_id != mine.session_id
    with pytest.raises(LifelineError) as hidden:
        await run(
            ctx,
            stranger,
            lambda db, actor: service.view_handoff(
                db=db, user=actor, handoff_id=mine.handoff_id, base_url=BASE
            ),
        )
    assert hidden.value.status_code == 404


async def test_what_a_pickup_wait_answers(ctx: AppContext, team: Team) -> None:
    result = await escalate(ctx, team["agent"])

    async def state() -> Any:
        return await run(
            ctx,
            team["agent"],
            lambda db, actor: service.pickup_state(
                db=db, user=actor, handoff_id=result.handoff_id, waited_seconds=1.23456
            ),
        )

    open_state = await state()
    assert (open_state.status, open_state.claimed_by, open_state.waited_seconds) == (
        "open",
        None,
        1.235,
    )
    # Events about other handoffs, or the handoff still open, don't end a wait.
    for events in ([{"data": {"id": "someone-else", "status": "claimed"}}], []):
        assert (
            await service.pickup_from_events(
                engine=ctx.engine,
                sessionmaker=ctx.sessionmaker,
                handoff_id=result.handoff_id,
                events=events,
                waited_seconds=1,
            )
            is None
        )

    await move(ctx, team["senior"], "claim", result)
    claimed = await state()
    assert claimed.status == "claimed"
    assert claimed.claimed_by is not None and claimed.claimed_by.name == team["senior"].name

    # Woken by the claim's event: the answer names who picked it up.
    event = {
        "data": {"id": result.handoff_id, "status": "claimed", "claimed_by": team["senior"].id}
    }
    woken = await service.pickup_from_events(
        engine=ctx.engine,
        sessionmaker=ctx.sessionmaker,
        handoff_id=result.handoff_id,
        events=[event],
        waited_seconds=2,
    )
    assert woken is not None and woken.status == "claimed"
    assert woken.claimed_by is not None and woken.claimed_by.id == team["senior"].id
    assert woken.claimed_by.name == team["senior"].name

    await run(
        ctx,
        team["senior"],
        lambda db, actor: handoffs.resolve_handoff(
            db=db,
            actor=actor,
            session_id=result.session_id,
            handoff_id=result.handoff_id,
            answer="Add the index concurrently.",
        ),
    )
    rechecked = await service.pickup_recheck(
        engine=ctx.engine,
        sessionmaker=ctx.sessionmaker,
        handoff_id=result.handoff_id,
        waited_seconds=3,
    )
    assert rechecked is not None
    assert (rechecked.status, rechecked.answer) == ("resolved", "Add the index concurrently.")
    assert (
        await service.pickup_recheck(
            engine=ctx.engine,
            sessionmaker=ctx.sessionmaker,
            handoff_id="00000000-0000-4000-8000-000000000000",
            waited_seconds=0,
        )
        is None
    )


async def test_a_reply_wait_sees_others_messages_and_the_end(ctx: AppContext, team: Team) -> None:
    result = await escalate(ctx, team["agent"])
    anchor = await run(
        ctx,
        team["agent"],
        lambda db, actor: service.reply_anchor(db=db, user=actor, session_id=result.session_id),
    )
    assert anchor is not None  # the transcript's last message
    await move(ctx, team["senior"], "claim", result)
    for person, text in ((team["agent"], "still stuck"), (team["senior"], "try VACUUM")):
        await run(
            ctx,
            person,
            lambda db, actor, text=text: service.post_message(
                db=db,
                actor=actor,
                session_id=result.session_id,
                content=text,
                role=MessageRole.USER,
            ),
        )

    async def replies() -> Any:
        return await run(
            ctx,
            team["agent"],
            lambda db, actor: service.reply_state(
                db=db, user=actor, session_id=result.session_id, after_id=anchor
            ),
        )

    state = await replies()
    # The caller's own message is not a reply.
    assert [m.content for m in state.messages] == ["try VACUUM"]
    assert state.messages[0].author is not None
    assert state.messages[0].author.name == team["senior"].name
    assert state.status == "claimed" and not service.wait_is_over(state.status)

    await move(ctx, team["agent"], "cancel", result)
    assert service.wait_is_over((await replies()).status)
    assert not service.wait_is_over(None)
    assert [s for s in HandoffStatus if service.wait_is_over(s)] == [
        "resolved",
        "cancelled",
        "expired",
    ]
