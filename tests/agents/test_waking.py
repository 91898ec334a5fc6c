"""A woken wait answers from the events that woke it: reads only for a name it doesn't know yet,
and never for events about something else. The state it answers is the API's own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from sqlalchemy import event

from lifeline.after_commit import PublishEvent
from lifeline.agents import service, waits
from lifeline.context import AppContext
from lifeline.realtime.waiters import Waiters
from tests.support.factories import Factory, escalate, new_session


@contextmanager
def statements(ctx: AppContext) -> Iterator[list[str]]:
    """Every SQL query this task runs on the application's engine while the block runs (the
    app's own background sends and sweeps use the engine too, and are not counted)."""
    seen: list[str] = []
    owner = asyncio.current_task()

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if asyncio.current_task() is not owner:
            return
        if not statement.startswith("BEGIN"):  # SQLite's transactions open with a statement
            seen.append(statement)

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)


async def answer(ctx: AppContext, handoff_id: str, events: list[dict[str, Any]]) -> Any:
    return await service.pickup_from_events(
        engine=ctx.engine,
        sessionmaker=ctx.sessionmaker,
        handoff_id=handoff_id,
        events=events,
        waited_seconds=1.5,
    )


async def test_a_wake_is_answered_from_the_claim_event(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    handoffs = []
    for title in ("first", "second"):
        session = await new_session(client, team["junior"], title=title)
        handoffs.append(await escalate(client, team["junior"], session["id"]))
    first, second = handoffs

    # News about another handoff of the account, or an open one, answers nothing: keep waiting.
    with statements(ctx) as seen:
        assert (
            await answer(ctx, first["id"], [{"type": "handoff.escalated", "data": second}]) is None
        )
        assert (
            await answer(ctx, first["id"], [{"type": "handoff.escalated", "data": first}]) is None
        )
    assert seen == []

    claims = []
    for handoff in handoffs:
        url = f"/api/v1/ai-sessions/{handoff['session_id']}/handoffs/{handoff['id']}/claim"
        response = await client.post(url, headers=team["senior"].headers)
        assert response.status_code == 200, response.text
        claims.append({"type": "handoff.claimed", "data": response.json()})

    # A claimer this process hasn't named yet: one read gives the name.
    with statements(ctx) as seen:
        woke = await answer(ctx, first["id"], claims[:1])
    assert len(seen) == 1
    assert woke.status == "claimed" and woke.waited_seconds == 1.5
    assert woke.claimed_by.model_dump() == {"id": team["senior"].id, "name": team["senior"].name}

    # The same claimer again: no read at all, the same answer as a read gives.
    with statements(ctx) as seen:
        woke = await answer(ctx, second["id"], claims)
    assert seen == []
    read = await service.pickup_recheck(
        engine=ctx.engine,
        sessionmaker=ctx.sessionmaker,
        handoff_id=second["id"],
        waited_seconds=1.5,
    )
    assert woke == read


async def test_a_wake_for_a_cancelled_escalation_needs_no_read(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    url = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/cancel"
    response = await client.post(url, headers=team["junior"].headers)
    assert response.status_code == 200, response.text
    with statements(ctx) as seen:
        woke = await answer(
            ctx, handoff["id"], [{"type": "handoff.cancelled", "data": response.json()}]
        )
    assert seen == []
    assert (woke.status, woke.claimed_by, woke.answer) == ("cancelled", None, None)


async def test_a_woken_wait_answers_before_the_work_its_event_queued_after_it() -> None:
    """The hub wakes an agent's wait, then queues a write to every open socket of the team. The
    wait must be answered in the turn it was woken, not after those writes (a wait sleeping in a
    task of its own, as under ``asyncio.wait_for``, needs a second turn, queued behind them)."""
    waiters = Waiters()
    order: list[str] = []

    async def check(_elapsed: float, news: list[dict[str, Any]] | None) -> str | None:
        if news:
            order.append("answered")
            return "claimed"
        return None

    async def progress(_elapsed: float, _seconds: float) -> None:
        order.append("progress")

    wait = asyncio.create_task(
        waits.wait_for(waiters=waiters, session_id="s1", seconds=5, check=check, progress=progress)
    )
    for _ in range(5):  # it watches the session, looks once, and sleeps
        await asyncio.sleep(0)
    assert len(waiters) == 1
    notice = PublishEvent(
        account_id="a1",
        audience="team",
        message={"id": 1, "type": "handoff.claimed", "data": {"session_id": "s1", "id": "h1"}},
    )
    assert waiters.notify(notice)
    loop = asyncio.get_running_loop()
    for _ in range(50):  # the socket writes the same event set off
        loop.call_soon(order.append, "socket write")
    result, _waited = await wait
    assert result == "claimed"
    assert order[0] == "answered", order[:3]
    assert not len(waiters)
