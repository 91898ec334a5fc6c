"""The hub: slow connections, replay-then-live hand-over, catch-up after a broker gap, drops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from lifeline.after_commit import DropConnections, PublishEvent
from lifeline.context import AppContext
from lifeline.db import create_engine, create_sessionmaker
from lifeline.realtime.audience import Viewer
from lifeline.realtime.events import event_message, record_event
from lifeline.realtime.hub import (
    CLOSE_REVOKED,
    CLOSE_SLOW,
    Connection,
    Envelope,
    Hub,
)
from lifeline.realtime.models import AUDIENCE_ACCOUNT
from tests.support.factories import Factory, Person


def make_hub(ctx: AppContext, queue_size: int = 8) -> Hub:
    return Hub(sessionmaker=ctx.sessionmaker, heartbeat_seconds=60, queue_size=queue_size)


async def log_event(ctx: AppContext, person: Person, n: int) -> PublishEvent:
    """Commit one account-wide event to the log; returns what the broker would carry."""
    async with ctx.sessionmaker() as db, db.begin():
        event = await record_event(
            db=db,
            account_id=person.user.account_id,
            type="handoff.escalated",
            audience=AUDIENCE_ACCOUNT,
            data={"n": n},
        )
    return PublishEvent(
        account_id=event.account_id, audience=event.audience, message=event_message(event)
    )


async def take(stream: AsyncIterator[Envelope | None], count: int) -> list[int]:
    """The ids of the next ``count`` events (heartbeats skipped)."""
    ids: list[int] = []
    async with asyncio.timeout(10):
        while len(ids) < count:
            envelope = await anext(stream)
            if envelope is not None:
                ids.append(envelope.id)
    return ids


def queued_ids(conn: Connection) -> list[Any]:
    return [item.id for item in conn.mailbox.snapshot() if isinstance(item, Envelope)]


async def test_a_slow_connection_is_closed_and_replays_on_reconnect(
    ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(fast="engineer", slow="engineer")
    hub = make_hub(ctx, queue_size=3)
    fast = hub.connect(Viewer.of(team["fast"].user))
    slow = hub.connect(Viewer.of(team["slow"].user))
    fast_stream = hub.stream(fast)
    notices = []
    for n in range(5):
        notices.append(await log_event(ctx, team.owner, n))
        hub.deliver(notices[-1])
        # The fast reader keeps up; the slow one never reads.
        assert await take(fast_stream, 1) == [notices[-1].event_id]
    assert slow.closing == CLOSE_SLOW
    assert fast.closing is None
    assert queued_ids(slow) == [n.event_id for n in notices[:3]]
    hub.disconnect(slow)

    # Reconnecting with the last id it got (none here: 0) replays everything it missed.
    again = hub.connect(Viewer.of(team["slow"].user), client_last_id=0)
    assert await take(hub.stream(again), 5) == [n.event_id for n in notices]


async def test_replay_then_live_hands_over_without_gap_or_duplicate(
    ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(senior="engineer")
    hub = make_hub(ctx)
    before = [await log_event(ctx, team.owner, n) for n in range(3)]
    conn = hub.connect(Viewer.of(team["senior"].user), client_last_id=before[0].event_id)
    # Committed after the subscription, before the replay ran: both in the log and queued live.
    during = [await log_event(ctx, team.owner, n) for n in range(3, 5)]
    for notice in during:
        hub.deliver(notice)
    # A late duplicate of something the client already had (its Last-Event-ID).
    hub.deliver(before[0])
    stream = hub.stream(conn)
    expected = [n.event_id for n in before[1:] + during]
    assert await take(stream, 4) == expected
    after = await log_event(ctx, team.owner, 5)
    hub.deliver(during[-1])
    hub.deliver(after)
    assert await take(stream, 1) == [after.event_id]


async def test_catch_up_after_a_broker_gap_sends_only_what_was_missed(
    ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(senior="engineer")
    other = await factory.team(stranger="engineer")
    hub = make_hub(ctx)
    conn = hub.connect(Viewer.of(team["senior"].user), latest_at_connect=0)
    stranger = hub.connect(Viewer.of(other["stranger"].user), latest_at_connect=0)
    stream = hub.stream(conn)
    seen = await log_event(ctx, team.owner, 0)
    hub.deliver(seen)
    assert await take(stream, 1) == [seen.event_id]

    hub.broker_lost()
    # Published while the broker was away: never delivered live.
    missed = [await log_event(ctx, team.owner, n) for n in range(1, 4)]
    theirs = await log_event(ctx, other.owner, 9)
    await hub.broker_resumed()
    assert await take(stream, 3) == [n.event_id for n in missed]
    assert queued_ids(stranger) == [theirs.event_id]
    # A publish retried after the outage arrives too, and is not sent twice.
    hub.deliver(missed[0])
    latest = await log_event(ctx, team.owner, 4)
    hub.deliver(latest)
    assert await take(stream, 1) == [latest.event_id]


async def test_what_arrives_live_while_catching_up_waits_for_the_catch_up(
    ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(senior="engineer")
    hub = make_hub(ctx)
    conn = hub.connect(Viewer.of(team["senior"].user), latest_at_connect=0)
    stream = hub.stream(conn)
    hub.broker_lost()
    missed = [await log_event(ctx, team.owner, n) for n in range(3)]
    # The broker is back and its next message is a new event, before the log was read:
    # delivered first, it would overtake the missed ones, and a client reconnecting with the
    # last id it got would never see them.
    hub.broker_resuming()
    newer = await log_event(ctx, team.owner, 3)
    hub.deliver(newer)
    assert queued_ids(conn) == []
    await hub.broker_resumed()
    assert await take(stream, 4) == [n.event_id for n in [*missed, newer]]
    # Held no longer: the next one goes straight out, and the held copy of one the catch-up
    # already sent is not sent twice.
    latest = await log_event(ctx, team.owner, 4)
    hub.deliver(latest)
    assert queued_ids(conn)[-1] == latest.event_id
    assert await take(stream, 1) == [latest.event_id]


async def test_held_events_go_out_even_when_the_catch_up_fails(
    ctx: AppContext, factory: Factory, tmp_path: Path
) -> None:
    team = await factory.team(senior="engineer")
    # The event log can't be read: the database file's directory does not exist.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'lifeline.db'}")
    hub = Hub(sessionmaker=create_sessionmaker(engine), heartbeat_seconds=60)
    try:
        conn = hub.connect(Viewer.of(team["senior"].user), latest_at_connect=0)
        hub.broker_resuming()
        newer = await log_event(ctx, team.owner, 0)
        hub.deliver(newer)
        assert queued_ids(conn) == []
        with pytest.raises(OperationalError):
            await hub.broker_resumed()
        assert queued_ids(conn) == [newer.event_id]
    finally:
        await engine.dispose()


async def test_drop_closes_only_the_matching_connections(ctx: AppContext, factory: Factory) -> None:
    team = await factory.team(senior="engineer", other="engineer")
    hub = make_hub(ctx)
    viewer = Viewer.of(team["senior"].user)
    by_token = hub.connect(viewer, token_id="t1")
    other_token = hub.connect(viewer, token_id="t2")
    by_cookie = hub.connect(viewer, web_session_id="w1")
    someone_else = hub.connect(Viewer.of(team["other"].user), token_id="t1")

    hub.deliver(DropConnections(user_id=viewer.user_id, token_id="t1"))
    assert by_token.closing == CLOSE_REVOKED
    assert other_token.closing is None and by_cookie.closing is None
    assert someone_else.closing is None

    hub.deliver(DropConnections(user_id=viewer.user_id, web_session_id="w1"))
    assert by_cookie.closing == CLOSE_REVOKED and other_token.closing is None

    hub.deliver(DropConnections(user_id=viewer.user_id))
    assert other_token.closing == CLOSE_REVOKED
    assert someone_else.closing is None
    # A closed connection's stream ends.
    async with asyncio.timeout(10):
        assert [e async for e in hub.stream(other_token)] == []


async def test_presence_counts_follow_connections(ctx: AppContext, factory: Factory) -> None:
    team = await factory.team(senior="engineer")
    hub = make_hub(ctx)
    viewer = Viewer.of(team["senior"].user)
    assert await hub.presence.is_online(viewer.user_id) is False
    first = hub.connect(viewer)
    second = hub.connect(viewer)
    assert await hub.presence.connection_counts([viewer.user_id]) == {viewer.user_id: 2}
    hub.disconnect(first)
    assert await hub.presence.is_online(viewer.user_id) is True
    hub.disconnect(second)
    assert await hub.presence.is_online(viewer.user_id) is False
    assert hub.connection_count == 0


async def test_a_woken_wait_is_answered_before_the_fan_out_which_keeps_every_event_in_order(
    ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(senior="engineer")
    hub = make_hub(ctx)
    conn = hub.connect(Viewer.of(team["senior"].user))
    first, second, third = [await log_event(ctx, team.owner, n) for n in range(3)]
    # The first event is about a session an agent's wait watches.
    data = {**first.message["data"], "session_id": "watched-session"}
    watched = PublishEvent(
        account_id=first.account_id,
        audience=first.audience,
        message={**first.message, "data": data},
    )
    with hub.waiters.watch("watched-session") as watch:
        hub.deliver(watched)
        # Nobody waits on the second, but it may not overtake the first on the sockets.
        hub.deliver(second)
        assert watch.take() == [watched.message]
        assert queued_ids(conn) == []
        await asyncio.sleep(0)  # one turn of the event loop
        assert queued_ids(conn) == [first.event_id, second.event_id]
    hub.deliver(third)  # nothing deferred, nobody waiting: at once
    assert queued_ids(conn) == [first.event_id, second.event_id, third.event_id]
