"""The relay against real SMTP servers on loopback: faults, retries, leases, isolation."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from lifeline.accounts.models import User
from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.notifications import leases
from lifeline.notifications.channels import ChannelResult, DeliveryChannel
from lifeline.notifications.channels.email import EmailChannel
from lifeline.notifications.channels.push import PushChannel
from lifeline.notifications.content import Notification
from lifeline.notifications.leases import DeliveryOutcome
from lifeline.notifications.models import DeliveryStatus
from lifeline.notifications.relay import Relay, retry_delay
from tests.notifications.conftest import (
    deliveries,
    escalate_without_dispatch,
    make_due,
    notification_settings,
    relay_of,
    running_app,
    settle,
)
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder, closed_port, hanging_smtp_server, smtp_recorder


async def _offline(_user_id: str) -> bool:
    return False


@contextmanager
def _down() -> Iterator[int]:
    yield closed_port()


@contextmanager
def _refusing() -> Iterator[int]:
    with smtp_recorder() as server:
        server.refuse("554 5.7.1 Transaction failed")
        yield server.port


FAULTS: dict[str, Callable[[], AbstractContextManager[int]]] = {
    "down": _down,
    "refusing": _refusing,
    "hanging": hanging_smtp_server,
}
EXPECTED = {
    # fault: (status after the first attempt, words in last_error)
    "down": ("pending", "SMTPConnectError"),
    "refusing": ("failed", "554"),
    "hanging": ("pending", "Timeout"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_graceful_degradation_when_email_service_fails(database_url: str, fault: str) -> None:
    with FAULTS[fault]() as port:
        settings = notification_settings(
            database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_timeout_seconds=0.5
        )
        async with running_app(settings) as (ctx, client):
            team = await Factory(ctx.sessionmaker).team(junior="engineer", senior="admin")
            session = await new_session(client, team["junior"])
            response = await client.post(
                f"/api/v1/ai-sessions/{session['id']}/handoff",
                headers=team["junior"].headers,
                json={"intent": "escalate", "note": "SMTP is having a bad day"},
            )
            # The handoff stands whatever SMTP does.
            assert response.status_code == 201, response.text
            handoff = response.json()
            if fault == "hanging":
                # Answered while the send was still waiting on the silent server.
                assert len(ctx.tasks) >= 1
            await ctx.tasks.drain()

            emails = [r for r in await deliveries(ctx, handoff["id"]) if r.channel == "email"]
            status, words = EXPECTED[fault]
            assert [(r.status, r.attempts) for r in emails] == [(status, 1)] * 2
            assert all(words in (r.last_error or "") for r in emails), emails[0].last_error
            queue = await client.get("/api/v1/ai-sessions/queue", headers=team["senior"].headers)
            assert [i["id"] for i in queue.json()["items"]] == [handoff["id"]]


class _Exploding:
    name = "email"

    async def deliver(self, notification: Notification) -> ChannelResult:
        raise RuntimeError("the email service blew up")

    async def aclose(self) -> None:
        return None


async def test_graceful_degradation_when_email_service_raises(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, settings: Settings
) -> None:
    """The seed's case: an exception from the email service never bubbles out of dispatch."""
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate_without_dispatch(ctx, team["junior"], session["id"])
    channels: dict[str, DeliveryChannel] = {
        "email": _Exploding(),
        "push": PushChannel(ctx.is_online),
    }
    relay = Relay(sessionmaker=ctx.sessionmaker, settings=settings, channels=channels)
    ids = [r.id for r in await deliveries(ctx, handoff.id)]

    counts = await relay.dispatch(ids)  # does not raise

    assert (counts.retrying, counts.skipped) == (2, 2)
    rows = await deliveries(ctx, handoff.id)
    assert {(r.channel, r.status, r.last_error) for r in rows} == {
        ("email", "pending", "RuntimeError: the email service blew up"),
        ("push", "skipped", "offline: no live connection"),
    }


async def test_smtp_down_then_up_delivers_exactly_once_per_recipient(database_url: str) -> None:
    port = closed_port()
    settings = notification_settings(database_url, smtp_host="127.0.0.1", smtp_port=port)
    async with running_app(settings) as (ctx, client):
        team = await Factory(ctx.sessionmaker).team(junior="engineer", a="admin", b="engineer")
        session = await new_session(client, team["junior"])
        handoff = await escalate(client, team["junior"], session["id"])
        await ctx.tasks.drain()
        emails = [r for r in await deliveries(ctx, handoff["id"]) if r.channel == "email"]
        assert {(r.status, r.attempts) for r in emails} == {("pending", 1)}

        with smtp_recorder(port) as smtp:
            # A second relay sweeping at the same time, as a worker would.
            other = Relay(
                sessionmaker=ctx.sessionmaker,
                settings=settings,
                channels={"email": EmailChannel(settings, _offline), "push": PushChannel(_offline)},
            )
            try:
                deadline = time.monotonic() + 30
                while len(smtp.messages) < 3 and time.monotonic() < deadline:
                    await asyncio.gather(relay_of(ctx).sweep(), other.sweep())
                    await asyncio.sleep(0.05)
                rows = await settle(ctx, handoff["id"])
                for _ in range(3):  # more sweeps find nothing left to send
                    await asyncio.gather(relay_of(ctx).sweep(), other.sweep())
            finally:
                await other.aclose()

            expected = sorted([team.owner.email, team["a"].email, team["b"].email])
            assert smtp.recipients() == expected
            assert {r.status for r in rows if r.channel == "email"} == {"sent"}
            assert all(
                r.attempts >= 2 and r.sent_at is not None for r in rows if r.channel == "email"
            )


async def test_concurrent_sweeps_never_send_a_row_twice(
    client: httpx.AsyncClient,
    ctx: AppContext,
    factory: Factory,
    settings: Settings,
    smtp: SmtpRecorder,
) -> None:
    team = await factory.team(**{f"s{i}": "engineer" for i in range(12)})
    session = await new_session(client, team["s0"])
    handoff = await escalate_without_dispatch(ctx, team["s0"], session["id"])
    await make_due(ctx)
    relays = [
        Relay(
            sessionmaker=ctx.sessionmaker,
            settings=settings,
            channels={"email": EmailChannel(settings, _offline), "push": PushChannel(_offline)},
            batch_size=3,
        )
        for _ in range(4)
    ]
    try:
        results = await asyncio.gather(*(r.sweep() for r in relays))
    finally:
        for r in relays:
            await r.aclose()

    rows = await deliveries(ctx, handoff.id)
    assert sum(c.claimed for c in results) == len(rows) == 24
    assert {r.status for r in rows if r.channel == "email"} == {"sent"}
    assert sorted(smtp.recipients()) == sorted(
        [team.owner.email] + [team[f"s{i}"].email for i in range(1, 12)]
    )


async def test_slow_recipient_does_not_delay_the_others(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", slow="admin", a="engineer", b="engineer")
    smtp.slow_for(team["slow"].email, 3.0)
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    rows = await settle(ctx, handoff["id"])

    order = [m.rcpt_tos[0] for m in smtp.messages]
    assert len(order) == 4
    assert order[-1] == team["slow"].email  # it finished last …
    assert set(order[:-1]) == {team.owner.email, team["a"].email, team["b"].email}
    sent_at = {r.recipient_user_id: r.sent_at for r in rows if r.channel == "email"}
    slowest = sent_at.pop(team["slow"].id)
    assert slowest is not None
    # … and every other row was marked sent before it: nobody waited for the slow one.
    assert all(t is not None and t < slowest for t in sent_at.values())


async def test_poison_row_never_blocks_the_others(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", broken="engineer", fine="engineer")
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(User).where(User.id == team["broken"].id).values(email="no at sign, no domain")
        )
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    rows = await settle(ctx, handoff["id"])

    email = {r.recipient_user_id: r for r in rows if r.channel == "email"}
    assert email[team["broken"].id].status == "failed"
    assert "not a deliverable address" in (email[team["broken"].id].last_error or "")
    assert email[team["fine"].id].status == "sent"
    assert smtp.recipients() == sorted([team.owner.email, team["fine"].email])


async def test_after_the_last_attempt_a_row_fails_for_good(database_url: str) -> None:
    settings = notification_settings(
        database_url, smtp_host="127.0.0.1", smtp_port=closed_port(), delivery_max_attempts=3
    )
    async with running_app(settings) as (ctx, client):
        team = await Factory(ctx.sessionmaker).team(junior="engineer", senior="admin")
        session = await new_session(client, team["junior"])
        handoff = await escalate(client, team["junior"], session["id"])
        rows = await settle(ctx, handoff["id"])

        email = next(r for r in rows if r.channel == "email")
        assert (email.status, email.attempts) == ("failed", 3)
        assert (email.last_error or "").startswith("gave up after 3 attempts: SMTPConnectError")
        await relay_of(ctx).sweep(now=utcnow() + timedelta(hours=1))
        assert (
            next(r for r in await deliveries(ctx, handoff["id"]) if r.id == email.id).attempts == 3
        )

        view = await client.get(
            f"/api/v1/handoffs/{handoff['id']}/deliveries", headers=team["junior"].headers
        )
        dead = [i for i in view.json()["items"] if i["channel"] == "email"]
        assert [(i["status"], i["attempts"], i["next_attempt_at"]) for i in dead] == [
            ("failed", 3, None)
        ] * 2


async def test_without_an_smtp_host_email_is_recorded_as_skipped(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = notification_settings(database_url, smtp_host=None)
    with caplog.at_level(logging.WARNING, logger="lifeline.notifications"):
        async with running_app(settings) as (ctx, client):
            assert any("LIFELINE_SMTP_HOST is not set" in r.message for r in caplog.records)
            team = await Factory(ctx.sessionmaker).team(junior="engineer", senior="admin")
            session = await new_session(client, team["junior"])
            handoff = await escalate(client, team["junior"], session["id"])
            rows = await settle(ctx, handoff["id"])
    assert {(r.channel, r.status, r.last_error) for r in rows} == {
        ("email", "skipped", "no SMTP server configured"),
        ("push", "skipped", "offline: no live connection"),
    }


async def test_a_sender_whose_lease_was_taken_over_cannot_overwrite_the_result(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate_without_dispatch(ctx, team["junior"], session["id"])
    row_id = next(r.id for r in await deliveries(ctx, handoff.id) if r.channel == "email")
    now = utcnow()
    lease = timedelta(seconds=60)

    async def claim_at(moment: timedelta) -> list[leases.LeasedDelivery]:
        async with ctx.sessionmaker() as db, db.begin():
            return await leases.take(
                db=db, now=now + moment, lease=lease, max_attempts=5, limit=10, ids=[row_id]
            )

    async def record(outcome: DeliveryOutcome) -> int:
        async with ctx.sessionmaker() as db, db.begin():
            return await leases.record_outcomes(db=db, outcomes=[outcome])

    [slow] = await claim_at(timedelta(0))
    assert await claim_at(timedelta(seconds=30)) == []  # still held
    [fresh] = await claim_at(timedelta(seconds=61))  # the lease expired: taken over
    assert (fresh.attempts, fresh.lease_token != slow.lease_token) == (2, True)

    assert (
        await record(DeliveryOutcome(row_id, fresh.lease_token, DeliveryStatus.SENT, None, now))
        == 1
    )
    late = DeliveryOutcome(row_id, slow.lease_token, DeliveryStatus.FAILED, "too late", now)
    assert await record(late) == 0

    row = next(r for r in await deliveries(ctx, handoff.id) if r.id == row_id)
    assert (row.status, row.last_error, row.lease_token) == ("sent", None, None)


async def test_rows_abandoned_on_their_last_attempt_are_dead_lettered(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, settings: Settings
) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate_without_dispatch(ctx, team["junior"], session["id"])
    ids = [r.id for r in await deliveries(ctx, handoff.id)]
    now = utcnow()
    for attempt in range(settings.delivery_max_attempts):  # every sender died mid-send
        async with ctx.sessionmaker() as db, db.begin():
            claimed = await leases.take(
                db=db,
                now=now + timedelta(minutes=attempt),
                lease=timedelta(seconds=30),
                max_attempts=settings.delivery_max_attempts,
                limit=10,
                ids=ids,
            )
            assert len(claimed) == 2

    counts = await relay_of(ctx).sweep(now=now + timedelta(hours=1))

    assert counts.abandoned == 2 and counts.claimed == 0
    rows = await deliveries(ctx, handoff.id)
    assert {r.status for r in rows} == {"failed"}
    assert all("sender stopped responding" in (r.last_error or "") for r in rows)


def test_backoff_first_retry_within_ten_seconds_then_doubling_to_a_cap() -> None:
    settings = Settings(env="test")
    delays = [retry_delay(settings, n).total_seconds() for n in range(1, 12)]
    assert delays[0] <= 10
    assert delays[1] > delays[0] and delays[2] > delays[1]
    assert max(delays) <= settings.delivery_backoff_max_seconds
    assert delays[-1] == settings.delivery_backoff_max_seconds
