"""Webhook endpoints, the integration outbox and endpoint health at the service level, on
SQLite and PostgreSQL: each account's own endpoints, the guards on replay, which events make
rows, and when an endpoint is switched off. Nothing is sent: the after-commit intents are
caught and counted instead; the owners' email goes to a recording SMTP server."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import Role, User
from lifeline.after_commit import (
    AfterCommitRunner,
    DeliverToIntegrations,
    DispatchDeliveries,
    PublishEvent,
    TaskSet,
)
from lifeline.ai_sessions import service as sessions
from lifeline.context import AppContext
from lifeline.db import unit_of_work, utcnow
from lifeline.errors import Conflict, NotFound
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Intent
from lifeline.integrations import health, outbox, webhooks
from lifeline.integrations.delivery import Attempt, ClaimedSend, SendResult
from lifeline.integrations.models import DeliveryAttempt, SlackIntegration, WebhookEndpoint
from lifeline.integrations.schemas import TEST_EVENT
from lifeline.integrations.ssrf import UnsafeUrl
from lifeline.notifications.models import Delivery, DeliveryStatus
from lifeline.realtime.models import AUDIENCE_ACCOUNT, Event
from tests.support.factories import Factory, Person, Team
from tests.support.smtp import SmtpRecorder

T = TypeVar("T")
HOOK = "http://127.0.0.1:9/hook"


class Desk:
    """One unit of work per call, as ``person``; what is handed to the integrations relay after
    each commit is kept in ``handed_over`` instead of sent."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.tasks = TaskSet()
        self.runner = AfterCommitRunner(self.tasks)
        self.handed_over: list[str] = []
        self.runner.register(DeliverToIntegrations, self._hand_over)
        self.runner.leave(PublishEvent, covered_by="no live connections in these tests")
        self.runner.leave(DispatchDeliveries, covered_by="no email or push in these tests")

    async def _hand_over(self, effect: DeliverToIntegrations) -> None:
        self.handed_over.extend(effect.delivery_ids)

    async def run(self, person: Person, work: Callable[[AsyncSession, User], Awaitable[T]]) -> T:
        async with unit_of_work(self.ctx.sessionmaker, self.runner) as db:
            actor = await db.get(User, person.id)
            assert actor is not None
            result = await work(db, actor)
        await self.tasks.drain()
        return result

    async def endpoint(
        self, person: Person, *, events: list[str] | None = None, enabled: bool = True
    ) -> WebhookEndpoint:
        return await self.run(
            person,
            lambda db, actor: webhooks.create_endpoint(
                db=db,
                actor=actor,
                url=HOOK,
                event_types=events or ["handoff.escalated"],
                description="ops",
                enabled=enabled,
                allow_private=True,
            ),
        )

    async def row(self, model: type[T], key: str) -> T:
        async with self.ctx.sessionmaker() as db:
            found = await db.get(model, key, populate_existing=True)
            assert found is not None
            return found


@pytest.fixture
def desk(ctx: AppContext) -> Desk:
    return Desk(ctx)


@pytest.fixture
async def team(factory: Factory) -> Team:
    return await factory.team(admin="admin")


async def _finish(desk: Desk, delivery_id: str, status: DeliveryStatus, **values: Any) -> None:
    async with desk.ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status=status, attempts=3, last_error="HTTP 500", **values)
        )


async def test_an_endpoint_is_created_with_its_own_secret_and_vetted_url(
    desk: Desk, team: Team
) -> None:
    first = await desk.endpoint(team.owner)
    second = await desk.endpoint(team["admin"])
    assert first.account_id == team.account.id and first.enabled
    assert first.secret.startswith(webhooks.SECRET_PREFIX) and first.secret != second.secret
    assert webhooks.signing_secrets(first, utcnow()) == [first.secret]
    with pytest.raises(UnsafeUrl) as caught:
        await desk.run(
            team.owner,
            lambda db, actor: webhooks.create_endpoint(
                db=db,
                actor=actor,
                url=HOOK,
                event_types=["handoff.escalated"],
                description="",
                enabled=True,
                allow_private=False,
            ),
        )
    assert caught.value.detail.startswith("url: ")


async def test_another_accounts_or_a_deleted_endpoint_is_not_found(
    desk: Desk, factory: Factory, team: Team
) -> None:
    mine = await desk.endpoint(team.owner)
    other = await factory.team()
    theirs = await desk.endpoint(other.owner)

    for action in (
        lambda db, actor: webhooks.get_endpoint(db=db, actor=actor, endpoint_id=theirs.id),
        lambda db, actor: webhooks.rotate_secret(db=db, actor=actor, endpoint_id=theirs.id),
        lambda db, actor: webhooks.send_test(db=db, actor=actor, endpoint_id=theirs.id),
        lambda db, actor: webhooks.delete_endpoint(db=db, actor=actor, endpoint_id=theirs.id),
        lambda db, actor: webhooks.list_deliveries(
            db=db, actor=actor, endpoint_id=theirs.id, cursor=None, limit=10
        ),
    ):
        with pytest.raises(NotFound) as caught:
            await desk.run(team.owner, action)
        assert caught.value.detail == "Webhook not found"
    # Nothing of theirs changed on the way.
    assert (await desk.row(WebhookEndpoint, theirs.id)).deleted_at is None

    await desk.run(
        team.owner,
        lambda db, actor: webhooks.delete_endpoint(db=db, actor=actor, endpoint_id=mine.id),
    )
    gone = await desk.row(WebhookEndpoint, mine.id)
    assert gone.deleted_at is not None and not gone.enabled
    with pytest.raises(NotFound):
        await desk.run(
            team.owner,
            lambda db, actor: webhooks.get_endpoint(db=db, actor=actor, endpoint_id=mine.id),
        )


async def test_listing_pages_through_the_accounts_live_endpoints_oldest_first(
    desk: Desk, factory: Factory, team: Team
) -> None:
    made = [await desk.endpoint(team.owner) for _ in range(3)]
    await desk.endpoint((await factory.team()).owner)
    await desk.run(
        team.owner,
        lambda db, actor: webhooks.delete_endpoint(db=db, actor=actor, endpoint_id=made[1].id),
    )
    first, cursor = await desk.run(
        team.owner,
        lambda db, actor: webhooks.list_endpoints(db=db, actor=actor, cursor=None, limit=1),
    )
    assert [e.id for e in first] == [made[0].id] and cursor is not None
    rest, end = await desk.run(
        team.owner,
        lambda db, actor: webhooks.list_endpoints(db=db, actor=actor, cursor=cursor, limit=5),
    )
    assert [e.id for e in rest] == [made[2].id] and end is None


async def test_an_update_changes_only_what_is_given_and_enabling_clears_why_it_stopped(
    desk: Desk, team: Team
) -> None:
    endpoint = await desk.endpoint(team.owner)
    async with desk.ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == endpoint.id)
            .values(enabled=False, disabled_reason="HTTP 410 Gone", failing_since=utcnow())
        )

    async def change(changes: dict[str, Any], *, allow_private: bool = True) -> WebhookEndpoint:
        return await desk.run(
            team.owner,
            lambda db, actor: webhooks.update_endpoint(
                db=db,
                actor=actor,
                endpoint_id=endpoint.id,
                changes=changes,
                allow_private=allow_private,
            ),
        )

    renamed = await change({"description": "pager", "url": None, "enabled": None})
    assert renamed.description == "pager" and renamed.url == HOOK
    assert not renamed.enabled and renamed.disabled_reason == "HTTP 410 Gone"

    with pytest.raises(UnsafeUrl):
        await change({"url": "http://127.0.0.1:8/elsewhere"}, allow_private=False)
    assert (await desk.row(WebhookEndpoint, endpoint.id)).url == HOOK

    back = await change(
        {"enabled": True, "event_types": ["handoff.claimed"], "url": "http://127.0.0.1:8/new"}
    )
    assert back.enabled and back.disabled_reason is None and back.failing_since is None
    assert back.event_types == ["handoff.claimed"] and back.url == "http://127.0.0.1:8/new"


async def test_a_rotation_signs_with_both_secrets_for_a_day(desk: Desk, team: Team) -> None:
    endpoint = await desk.endpoint(team.owner)
    rotated = await desk.run(
        team.owner,
        lambda db, actor: webhooks.rotate_secret(db=db, actor=actor, endpoint_id=endpoint.id),
    )
    assert rotated.previous_secret == endpoint.secret and rotated.secret != endpoint.secret
    now = utcnow()
    assert webhooks.signing_secrets(rotated, now) == [rotated.secret, endpoint.secret]
    later = now + webhooks.ROTATION_OVERLAP + timedelta(seconds=1)
    assert webhooks.signing_secrets(rotated, later) == [rotated.secret]


async def test_a_test_send_is_queued_even_to_a_disabled_endpoint(desk: Desk, team: Team) -> None:
    endpoint = await desk.endpoint(team.owner, enabled=False)
    delivery = await desk.run(
        team["admin"],
        lambda db, actor: webhooks.send_test(db=db, actor=actor, endpoint_id=endpoint.id),
    )
    assert desk.handed_over == [delivery.id]
    assert delivery.status == DeliveryStatus.PENDING and delivery.handoff_id is None
    assert delivery.message_id == webhooks.message_id_for(delivery.id)
    assert delivery.payload is not None and delivery.payload["type"] == TEST_EVENT
    assert delivery.payload["data"] == {
        "webhook_id": endpoint.id,
        "sent_by": {"id": team["admin"].id, "name": team["admin"].name},
    }


async def test_replaying_one_delivery_and_its_guards(desk: Desk, team: Team) -> None:
    endpoint = await desk.endpoint(team.owner)
    other = await desk.endpoint(team.owner)
    sent = await desk.run(
        team.owner,
        lambda db, actor: webhooks.send_test(db=db, actor=actor, endpoint_id=endpoint.id),
    )

    async def replay(endpoint_id: str, delivery_id: str) -> Delivery:
        return await desk.run(
            team.owner,
            lambda db, actor: webhooks.replay_delivery(
                db=db, actor=actor, endpoint_id=endpoint_id, delivery_id=delivery_id
            ),
        )

    with pytest.raises(Conflict) as caught:
        await replay(endpoint.id, sent.id)
    assert caught.value.detail == "This delivery is already queued"
    # A delivery is found only under its own endpoint.
    with pytest.raises(NotFound) as missing:
        await replay(other.id, sent.id)
    assert missing.value.detail == "Delivery not found"

    await _finish(desk, sent.id, DeliveryStatus.FAILED, sent_at=utcnow())
    desk.handed_over.clear()
    again = await replay(endpoint.id, sent.id)
    assert again.status == DeliveryStatus.PENDING
    assert (again.attempts, again.last_error, again.sent_at) == (0, None, None)
    assert again.message_id == sent.message_id
    assert desk.handed_over == [sent.id]

    await _finish(desk, sent.id, DeliveryStatus.FAILED)
    await desk.run(
        team.owner,
        lambda db, actor: webhooks.update_endpoint(
            db=db,
            actor=actor,
            endpoint_id=endpoint.id,
            changes={"enabled": False},
            allow_private=True,
        ),
    )
    with pytest.raises(Conflict) as disabled:
        await replay(endpoint.id, sent.id)
    assert disabled.value.detail == "The webhook is disabled; enable it before replaying"


async def test_replaying_every_failure_since_a_moment(desk: Desk, team: Team) -> None:
    endpoint = await desk.endpoint(team.owner)

    async def queued() -> str:
        delivery = await desk.run(
            team.owner,
            lambda db, actor: webhooks.send_test(db=db, actor=actor, endpoint_id=endpoint.id),
        )
        return delivery.id

    old, failed, sent, waiting = [await queued() for _ in range(4)]
    since = utcnow() - timedelta(hours=1)
    await _finish(desk, old, DeliveryStatus.FAILED, created_at=since - timedelta(minutes=1))
    await _finish(desk, failed, DeliveryStatus.FAILED)
    await _finish(desk, sent, DeliveryStatus.SENT)
    desk.handed_over.clear()

    count = await desk.run(
        team.owner,
        lambda db, actor: webhooks.replay_failed_since(
            db=db, actor=actor, endpoint_id=endpoint.id, since=since
        ),
    )
    assert count == 1 and desk.handed_over == [failed]
    statuses = {i: (await desk.row(Delivery, i)).status for i in (old, failed, sent, waiting)}
    assert statuses == {
        old: DeliveryStatus.FAILED,
        failed: DeliveryStatus.PENDING,
        sent: DeliveryStatus.SENT,
        waiting: DeliveryStatus.PENDING,
    }
    # Nothing failed left: nothing queued, nothing handed over.
    desk.handed_over.clear()
    assert (
        await desk.run(
            team.owner,
            lambda db, actor: webhooks.replay_failed_since(
                db=db, actor=actor, endpoint_id=endpoint.id, since=since
            ),
        )
        == 0
    )
    assert desk.handed_over == []


async def test_the_delivery_log_is_newest_first_with_each_rows_attempts(
    desk: Desk, team: Team
) -> None:
    endpoint = await desk.endpoint(team.owner)
    first = await desk.run(
        team.owner,
        lambda db, actor: webhooks.send_test(db=db, actor=actor, endpoint_id=endpoint.id),
    )
    second = await desk.run(
        team.owner,
        lambda db, actor: webhooks.send_test(db=db, actor=actor, endpoint_id=endpoint.id),
    )
    now = utcnow()
    async with desk.ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(Delivery).where(Delivery.id == first.id).values(created_at=now - timedelta(1))
        )
        for n, code in enumerate((500, 200)):
            db.add(
                DeliveryAttempt(
                    delivery_id=first.id,
                    at=now + timedelta(seconds=n),
                    status_code=code,
                    duration_ms=10,
                    response_excerpt="",
                )
            )
    rows, cursor = await desk.run(
        team.owner,
        lambda db, actor: webhooks.list_deliveries(
            db=db, actor=actor, endpoint_id=endpoint.id, cursor=None, limit=10
        ),
    )
    assert cursor is None
    assert [(d.id, [a.status_code for a in tries]) for d, tries in rows] == [
        (second.id, []),
        (first.id, [500, 200]),
    ]


async def escalate(desk: Desk, person: Person) -> str:
    """An escalation through the service, made before any endpoint exists; → its id."""

    async def work(db: AsyncSession, actor: User) -> str:
        session = await sessions.create_session(db=db, actor=actor, title="x", messages=[])
        handoff = await handoffs.create_handoff(
            db=db,
            actor=actor,
            session_id=session.id,
            intent=Intent.ESCALATE,
            note="help",
            email_cap=desk.ctx.settings.email_cap_per_hour,
        )
        return handoff.id

    return await desk.run(person, work)


async def _event(desk: Desk, team: Team, type_: str, audience: str, payload: Any) -> list[str]:
    """Record one event as the realtime layer does and let the outbox follow it."""

    async def work(db: AsyncSession, _actor: User) -> list[str]:
        event = Event(account_id=team.account.id, type=type_, audience=audience, payload=payload)
        db.add(event)
        await db.flush()
        return [row.id for row in await outbox.enqueue_for_event(db=db, event=event)]

    return await desk.run(team.owner, work)


async def test_events_make_one_row_per_subscribed_live_endpoint(
    desk: Desk, factory: Factory, team: Team
) -> None:
    handoff_id = await escalate(desk, team["admin"])
    wanted = await desk.endpoint(team.owner, events=["handoff.escalated", "handoff.claimed"])
    await desk.endpoint(team.owner, events=["handoff.claimed"])
    await desk.endpoint(team.owner, enabled=False)
    await desk.endpoint((await factory.team()).owner)
    gone = await desk.endpoint(team.owner)
    await desk.run(
        team.owner,
        lambda db, actor: webhooks.delete_endpoint(db=db, actor=actor, endpoint_id=gone.id),
    )
    desk.handed_over.clear()

    ids = await _event(desk, team, "handoff.escalated", AUDIENCE_ACCOUNT, _payload(handoff_id))
    assert desk.handed_over == ids and len(ids) == 1
    row = await desk.row(Delivery, ids[0])
    assert (row.endpoint_id, row.handoff_id) == (wanted.id, handoff_id)
    assert row.payload is not None and row.payload["type"] == "handoff.escalated"
    assert row.payload["data"] == _payload(handoff_id)


async def test_a_park_and_unknown_event_types_go_nowhere(desk: Desk, team: Team) -> None:
    await desk.endpoint(team.owner, events=["handoff.parked", "handoff.escalated"])
    desk.handed_over.clear()
    private = f"user:{team.owner.id}"
    assert await _event(desk, team, "handoff.escalated", private, {}) == []
    assert await _event(desk, team, "account.renamed", AUDIENCE_ACCOUNT, {}) == []
    assert desk.handed_over == []
    async with desk.ctx.sessionmaker() as db:
        assert list(await db.scalars(select(Delivery.id))) == []


async def _slack(desk: Desk, team: Team) -> None:
    async with desk.ctx.sessionmaker() as db, db.begin():
        db.add(
            SlackIntegration(
                account_id=team.account.id,
                team_id=f"T{team.account.id[:8]}",
                bot_token="xoxb-test",
                signing_secret="s",
                channel="C1",
            )
        )


def _payload(handoff_id: str) -> dict[str, Any]:
    return {"id": handoff_id}


async def test_slack_follows_handoff_events_of_a_configured_account_only(
    desk: Desk, team: Team
) -> None:
    handoff_id = await escalate(desk, team["admin"])
    # No Slack configured: nothing for it.
    assert await _event(desk, team, "handoff.claimed", AUDIENCE_ACCOUNT, _payload(handoff_id)) == []

    await _slack(desk, team)
    ids = await _event(desk, team, "handoff.claimed", AUDIENCE_ACCOUNT, _payload(handoff_id))
    assert len(ids) == 1
    row = await desk.row(Delivery, ids[0])
    assert (row.channel, row.handoff_id, row.endpoint_id) == ("slack", handoff_id, None)
    # A session's message is not a handoff event: Slack isn't told.
    assert await _event(desk, team, "session.message", AUDIENCE_ACCOUNT, {"id": "m"}) == []


def _send(endpoint_id: str | None, *, channel: str = "webhook") -> ClaimedSend:
    return ClaimedSend(
        id="d",
        lease_token="t",
        channel=channel,
        account_id="a",
        endpoint_id=endpoint_id,
        handoff_id=None,
        message_id="m",
        attempts=1,
        payload={},
    )


def _failed(*, gone: str | None = None, attempted: bool = True) -> SendResult:
    attempt = Attempt(at=utcnow(), status_code=500, duration_ms=5, response_excerpt="")
    return SendResult(
        DeliveryStatus.FAILED,
        "HTTP 500",
        attempt=attempt if attempted else None,
        disable_endpoint=gone,
    )


async def _track(desk: Desk, done: list[tuple[ClaimedSend, SendResult]], **at: Any) -> list[str]:
    now = utcnow() + at.get("later", timedelta(0))
    async with desk.ctx.sessionmaker() as db, db.begin():
        disabled = await health.track(db=db, done=done, now=now)
    return [d.endpoint_id for d in disabled]


async def test_a_failure_run_starts_once_and_a_success_ends_it(desk: Desk, team: Team) -> None:
    endpoint = await desk.endpoint(team.owner)
    assert await _track(desk, [(_send(endpoint.id), _failed())]) == []
    since = (await desk.row(WebhookEndpoint, endpoint.id)).failing_since
    assert since is not None
    # A later failure keeps the run's start; one never attempted (refused before sending), a
    # Slack row and a row without an endpoint say nothing about the endpoint.
    await _track(
        desk,
        [
            (_send(endpoint.id), _failed()),
            (_send(endpoint.id), _failed(attempted=False)),
            (_send(endpoint.id, channel="slack"), SendResult.sent()),
            (_send(None), SendResult.sent()),
        ],
    )
    assert (await desk.row(WebhookEndpoint, endpoint.id)).failing_since == since
    # A success in the same batch as a failure wins.
    await _track(desk, [(_send(endpoint.id), _failed()), (_send(endpoint.id), SendResult.sent())])
    assert (await desk.row(WebhookEndpoint, endpoint.id)).failing_since is None


async def test_gone_or_failing_for_five_days_switches_the_endpoint_off(
    desk: Desk, team: Team
) -> None:
    gone = await desk.endpoint(team.owner)
    failing = await desk.endpoint(team.owner)
    assert await _track(desk, [(_send(gone.id), _failed(gone="HTTP 410 Gone"))]) == [gone.id]
    off = await desk.row(WebhookEndpoint, gone.id)
    assert (off.enabled, off.disabled_reason) == (False, "HTTP 410 Gone")

    await _track(desk, [(_send(failing.id), _failed())])
    # Four days on: still trying.
    assert await _track(desk, [(_send(failing.id), _failed())], later=timedelta(days=4)) == []
    assert (await desk.row(WebhookEndpoint, failing.id)).enabled
    five = health.FAILURE_WINDOW + timedelta(minutes=1)
    assert await _track(desk, [(_send(failing.id), _failed())], later=five) == [failing.id]
    off = await desk.row(WebhookEndpoint, failing.id)
    assert (off.enabled, off.disabled_reason) == (False, health.FAILING_FOR_DAYS)
    # Already off: not switched off (nor reported) twice.
    assert await _track(desk, [(_send(failing.id), _failed())], later=five) == []


async def test_the_owners_are_told_by_email_when_an_endpoint_is_switched_off(
    ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(admin="admin")
    second_owner = await factory.person(team, key="boss", role=Role.OWNER)
    disabled = health.Disabled("e1", team.account.id, HOOK, "HTTP 410 Gone")
    settings = ctx.settings.model_copy(update={"smtp_host": smtp.host, "smtp_port": smtp.port})
    await health.tell_owners(sessionmaker=ctx.sessionmaker, settings=settings, disabled=disabled)
    # Owners only, never an admin.
    assert smtp.recipients() == sorted([team.owner.email, second_owner.email])
    message = smtp.messages[0]
    assert message.message["Subject"] == f"[Lifeline] Webhook disabled: {HOOK}"
    assert "HTTP 410 Gone" in message.text and "/settings#webhooks" in message.text


async def test_telling_the_owners_never_raises(
    ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team()
    disabled = health.Disabled("e1", team.account.id, HOOK, health.FAILING_FOR_DAYS)
    # No SMTP server configured: nobody to tell, nothing raised.
    unset = ctx.settings.model_copy(update={"smtp_host": None})
    await health.tell_owners(sessionmaker=ctx.sessionmaker, settings=unset, disabled=disabled)
    # An SMTP server that refuses: logged, nothing raised, nothing sent.
    smtp.refuse()
    refusing = ctx.settings.model_copy(update={"smtp_host": smtp.host, "smtp_port": smtp.port})
    await health.tell_owners(sessionmaker=ctx.sessionmaker, settings=refusing, disabled=disabled)
    assert smtp.messages == []
