"""Webhooks through the outbox to a real receiver on loopback, verified with standardwebhooks."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from lifeline.accounts.models import User
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import MessageRole
from lifeline.context import AppContext
from lifeline.db import unit_of_work, utcnow
from lifeline.integrations.delivery import MAX_ATTEMPTS
from lifeline.integrations.models import WebhookEndpoint
from lifeline.notifications.models import Delivery
from tests.integrations.conftest import (
    attempts_of,
    create_webhook,
    integration_settings,
    make_due,
    relay_of,
    running_app,
    settle,
    webhook_rows,
)
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder
from tests.support.webhooks import Receiver, Reply


async def test_an_escalation_reaches_the_receiver_signed_as_standard_webhooks(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url)
    receiver.secrets = [hook["secret"]]
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"], note="CI deadlock")
    rows = await settle(ctx, travel=False)

    [payload] = [p for p in receiver.verified if p["type"] == "handoff.escalated"]
    assert set(payload) == {"type", "timestamp", "data"}
    assert payload["data"] == handoff
    got = receiver.received[-1]
    assert got.headers["webhook-id"].startswith("msg_")
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-signature"].startswith("v1,")
    assert all(r.status == "sent" for r in rows)
    # A transcript message is an event too.
    added = await client.post(
        f"/api/v1/ai-sessions/{session['id']}/messages",
        headers=team["junior"].headers,
        json={"role": "user", "content": "still stuck"},
    )
    assert added.status_code == 201, added.text
    await settle(ctx, travel=False)
    assert receiver.verified[-1]["type"] == "session.message"
    assert receiver.verified[-1]["data"]["content"] == "still stuck"

    listing = await client.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries", headers=team.owner.headers
    )
    assert listing.status_code == 200
    item = next(i for i in listing.json()["items"] if i["event_type"] == "handoff.escalated")
    assert item["status"] == "sent"
    [attempt] = item["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["response_excerpt"] == "ok"
    assert attempt["duration_ms"] >= 0 and attempt["at"]

    # Listed with the handoff's own deliveries, as a row without a recipient.
    handoff_rows = await client.get(
        f"/api/v1/handoffs/{handoff['id']}/deliveries", headers=team.owner.headers
    )
    webhook_items = [i for i in handoff_rows.json()["items"] if i["channel"] == "webhook"]
    assert len(webhook_items) == 1
    assert webhook_items[0]["recipient"] is None
    assert webhook_items[0]["endpoint_id"] == hook["id"]


async def test_only_subscribed_events_and_never_a_park(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.claimed"])
    receiver.secrets = [hook["secret"]]
    parked = await new_session(client, team["junior"])
    await escalate(client, team["junior"], parked["id"], intent="park")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    await settle(ctx, travel=False)
    assert receiver.received == []
    claim = await client.post(
        f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim",
        headers=team["senior"].headers,
    )
    assert claim.status_code == 200
    await settle(ctx, travel=False)
    assert [p["type"] for p in receiver.verified] == ["handoff.claimed"]
    assert receiver.verified[0]["data"]["claimed_by"] == team["senior"].id


async def test_one_row_per_endpoint_per_event(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    first = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    second = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    disabled = await create_webhook(
        client, team.owner, receiver.url, ["handoff.escalated"], enabled=False
    )
    other = await factory.team(junior="engineer")
    await create_webhook(client, other.owner, receiver.url, ["handoff.escalated"])
    receiver.secrets = [first["secret"], second["secret"]]
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    rows = await settle(ctx, travel=False)
    assert sorted(r.endpoint_id for r in rows) == sorted([first["id"], second["id"]])
    assert disabled["id"] not in {r.endpoint_id for r in rows}
    assert len(receiver.received) == 2
    assert all(len(r.verified_with) == 1 for r in receiver.received)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 2


async def test_a_500_and_a_timeout_are_retried_with_every_attempt_logged(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    receiver.secrets = [hook["secret"]]
    receiver.replies = [Reply(500, "database down"), Reply(200, "late", delay=3.0), Reply(202)]
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])

    await ctx.tasks.drain()
    [row] = await webhook_rows(ctx, hook["id"])
    assert row.status == "pending" and row.last_error == "HTTP 500"
    # The first retry is scheduled about 5 s later (with jitter).
    wait = (row.next_attempt_at - utcnow()).total_seconds()
    assert 3.0 < wait < 6.0

    [row] = await settle(ctx)
    assert row.status == "sent"
    attempts = await attempts_of(ctx, row.id)
    assert [a.status_code for a in attempts] == [500, None, 202]
    assert attempts[0].response_excerpt == "database down"
    assert attempts[1].response_excerpt.startswith("timed out after 1 s")
    # Same message every time: the receiver can tell a retry from a new event.
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    assert len(receiver.received) == 3
    assert all(r.verified_with for r in receiver.received)


async def test_retry_after_is_honoured_and_only_the_first_kib_is_kept(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    receiver.replies = [Reply(429, "x" * 5000, headers={"Retry-After": "600"})]
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()
    [row] = await webhook_rows(ctx, hook["id"])
    assert row.status == "pending"
    wait = (row.next_attempt_at - utcnow()).total_seconds()
    assert 590 < wait <= 600
    [attempt] = await attempts_of(ctx, row.id)
    assert attempt.status_code == 429 and attempt.response_excerpt == "x" * 1024


async def test_410_gone_disables_the_endpoint(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url)
    receiver.default = Reply(410, "gone")
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    rows = await settle(ctx, travel=False)
    assert {r.status for r in rows} == {"failed"}
    read = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=team.owner.headers)
    assert read.json()["enabled"] is False
    assert "410" in read.json()["disabled_reason"]
    # Nothing more is queued for it.
    count = len(rows)
    await new_session(client, team["junior"])
    await settle(ctx, travel=False)
    assert len(await webhook_rows(ctx, hook["id"])) == count


async def test_a_delivery_gives_up_after_the_whole_schedule(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    receiver.default = Reply(503, "busy")
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    [row] = await settle(ctx)
    assert row.status == "failed"
    assert row.last_error == f"gave up after {MAX_ATTEMPTS} attempts: HTTP 503"
    assert len(await attempts_of(ctx, row.id)) == MAX_ATTEMPTS == 8


async def test_five_days_of_only_failures_disables_and_tells_the_owners(
    client: httpx.AsyncClient,
    ctx: AppContext,
    factory: Factory,
    receiver: Receiver,
    smtp: SmtpRecorder,
) -> None:
    team = await factory.team(junior="engineer", admin="admin")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    receiver.default = Reply(500)
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()
    read = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=team.owner.headers)
    assert read.json()["enabled"] is True
    # The run of failures started five days and a minute ago.
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == hook["id"])
            .values(failing_since=utcnow() - timedelta(days=5, minutes=1))
        )
    await make_due(ctx)
    await relay_of(ctx).sweep()
    read = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=team.owner.headers)
    assert read.json()["enabled"] is False
    assert read.json()["disabled_reason"] == "nothing but failures for 5 days"
    [mail] = [
        m for m in smtp.to(team.owner.email) if "Webhook disabled" in str(m.message["Subject"])
    ]
    assert receiver.url in mail.text
    assert not [
        m for m in smtp.to(team["admin"].email) if "Webhook disabled" in str(m.message["Subject"])
    ]


async def test_a_success_ends_the_failure_run(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    receiver.replies = [Reply(500)]
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()
    async with ctx.sessionmaker() as db, db.begin():
        endpoint = await db.get(WebhookEndpoint, hook["id"])
        assert endpoint is not None and endpoint.failing_since is not None
    await settle(ctx)
    async with ctx.sessionmaker() as db, db.begin():
        endpoint = await db.get(WebhookEndpoint, hook["id"])
        assert endpoint is not None and endpoint.failing_since is None and endpoint.enabled


async def test_redirects_are_not_followed(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    url = receiver.url.replace("/hook", "/redirect")
    hook = await create_webhook(client, team.owner, url, ["handoff.escalated"])
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()
    [row] = await webhook_rows(ctx, hook["id"])
    assert row.status == "pending" and row.last_error == "HTTP 302"
    assert receiver.received == []


async def test_a_url_that_turned_private_is_refused_at_send_time(
    database_url: str, receiver: Receiver
) -> None:
    # Created while private addresses were allowed; sent by a process where they are not.
    async with running_app(integration_settings(database_url)) as (ctx, client):
        team = await Factory(ctx.sessionmaker).team(junior="engineer")
        hook = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    strict = integration_settings(database_url, webhook_allow_private=False)
    async with running_app(strict) as (ctx, client):
        session = await new_session(client, team["junior"])
        await escalate(client, team["junior"], session["id"])
        await ctx.tasks.drain()
        [row] = await webhook_rows(ctx, hook["id"])
        assert row.status == "failed"
        assert row.last_error is not None and row.last_error.startswith("refused: url:")
        [attempt] = await attempts_of(ctx, row.id)
        assert attempt.status_code is None
    assert receiver.received == []


async def test_a_rolled_back_event_sends_nothing(
    ctx: AppContext, factory: Factory, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer")
    await create_webhook(client, team.owner, receiver.url, ["session.message"])
    session = await new_session(client, team["junior"])
    with pytest.raises(RuntimeError):
        async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
            actor = await db.get(User, team["junior"].id)
            assert actor is not None
            await sessions.add_message(
                db=db,
                actor=actor,
                session_id=session["id"],
                role=MessageRole.USER,
                content="never happened",
            )
            assert len((await db.scalars(select(Delivery))).all()) == 1
            raise RuntimeError("the request failed after the message was written")
    await settle(ctx, travel=False)
    assert receiver.received == []
    assert await webhook_rows(ctx) == []
