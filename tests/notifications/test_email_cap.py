"""The per-account cap on escalation emails per hour (LIFELINE_EMAIL_CAP_PER_HOUR).

Email rows beyond the cap are written as ``skipped`` ("hourly email cap reached") and never
reach SMTP; push is not capped; rows older than an hour, opted-out rows and other accounts'
rows don't count.
"""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import update

from lifeline import worker
from lifeline.accounts.models import Role
from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.handoffs.models import Handoff, HandoffStatus
from lifeline.notifications.models import Delivery
from lifeline.notifications.outbox import EMAIL_CAP_REACHED, OPTED_OUT
from lifeline.policies.models import EscalationSchedule
from tests.notifications.conftest import deliveries, notification_settings, running_app, settle
from tests.policies.helpers import put_policy, step
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder


def _email_outcomes(rows: list[Delivery]) -> dict[str, tuple[str, str | None]]:
    return {r.recipient_user_id: (r.status, r.last_error) for r in rows if r.channel == "email"}


async def test_emails_over_the_hourly_cap_are_skipped_and_push_still_goes(
    database_url: str, smtp: SmtpRecorder
) -> None:
    settings = notification_settings(
        database_url, smtp_host=smtp.host, smtp_port=smtp.port, email_cap_per_hour=3
    )
    async with running_app(settings) as (ctx, client):
        factory = Factory(ctx.sessionmaker)
        team = await factory.team(junior="engineer", a="admin", b="engineer", c="engineer")
        quiet = await factory.person(team, key="quiet", role=Role.ENGINEER)
        muted = await client.patch(
            "/api/v1/me", headers=quiet.headers, json={"email_notifications": "never"}
        )
        assert muted.status_code == 200, muted.text
        other = await factory.team(junior="engineer", senior="admin")
        seniors = [team.owner, team["a"], team["b"], team["c"]]

        first = await escalate(
            client, team["junior"], (await new_session(client, team["junior"]))["id"]
        )
        rows = await settle(ctx, first["id"])
        emails = _email_outcomes(rows)
        # In recipient order: the first three are sent, the fourth is over the cap; the one who
        # opted out is recorded as such and uses none of it.
        assert [emails[p.id] for p in seniors] == [
            ("sent", None),
            ("sent", None),
            ("sent", None),
            ("skipped", EMAIL_CAP_REACHED),
        ]
        assert emails[quiet.id] == ("skipped", OPTED_OUT)
        # Push is not capped: one row each, decided by presence (nobody is online here).
        push = {r.recipient_user_id: r.last_error for r in rows if r.channel == "push"}
        assert set(push) == {p.id for p in [*seniors, quiet]}
        assert EMAIL_CAP_REACHED not in push.values()
        assert smtp.recipients() == sorted(p.email for p in seniors[:3])

        second = await escalate(
            client, team["junior"], (await new_session(client, team["junior"]))["id"]
        )
        rows = await settle(ctx, second["id"])
        assert set(_email_outcomes(rows).values()) == {
            ("skipped", EMAIL_CAP_REACHED),
            ("skipped", OPTED_OUT),
        }
        assert len(smtp.messages) == 3

        # Another account has its own hour.
        elsewhere = await escalate(
            client, other["junior"], (await new_session(client, other["junior"]))["id"]
        )
        rows = await settle(ctx, elsewhere["id"])
        assert set(_email_outcomes(rows).values()) == {("sent", None)}
        assert len(smtp.messages) == 5

        # An hour later the cap has room again.
        async with ctx.sessionmaker() as db, db.begin():
            await db.execute(
                update(Delivery)
                .where(Delivery.account_id == team.account.id)
                .values(created_at=utcnow() - timedelta(minutes=61))
            )
        third = await escalate(
            client, team["junior"], (await new_session(client, team["junior"]))["id"]
        )
        rows = await settle(ctx, third["id"])
        assert sum(s == ("sent", None) for s in _email_outcomes(rows).values()) == 3
        assert len(smtp.messages) == 8

        view = await client.get(
            f"/api/v1/handoffs/{second['id']}/deliveries", headers=team.owner.headers
        )
        assert view.status_code == 200
        capped = [i for i in view.json()["items"] if i["last_error"] == EMAIL_CAP_REACHED]
        assert {i["recipient"]["id"] for i in capped} == {p.id for p in seniors}
        assert {i["channel"] for i in capped} == {"email"}


async def test_by_default_the_cap_is_500_emails_an_hour(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", a="admin", b="engineer")
    first = await escalate(
        client, team["junior"], (await new_session(client, team["junior"]))["id"]
    )
    await settle(ctx, first["id"])  # 3 emails: owner, a, b
    # 496 more email rows of this account in the last hour: 499 in all, one short of the cap.
    now = utcnow()
    async with ctx.sessionmaker() as db, db.begin():
        db.add_all(
            Delivery(
                handoff_id=first["id"],
                account_id=team.account.id,
                recipient_user_id=team["a"].id,
                channel="email",
                kind="escalated",
                event_key=f"filler:{n}",
                dedupe_key=f"filler:{n}",
                message_id=f"<filler{n}@lifeline>",
                status="sent",
                created_at=now,
            )
            for n in range(496)
        )

    second = await escalate(
        client, team["junior"], (await new_session(client, team["junior"]))["id"]
    )
    rows = await settle(ctx, second["id"])
    outcomes = sorted(_email_outcomes(rows).values(), key=str)
    assert outcomes == [
        ("sent", None),
        ("skipped", EMAIL_CAP_REACHED),
        ("skipped", EMAIL_CAP_REACHED),
    ]
    assert len(smtp.messages) == 4


async def _travel(ctx: AppContext, handoff_id: str, minutes: int) -> None:
    """As if the escalation was queued ``minutes`` ago and what it waits for is due now: the
    worker judges time by the real clock, so its rows move instead."""
    back = timedelta(minutes=minutes)
    async with ctx.sessionmaker() as db, db.begin():
        handoff = await db.get(Handoff, handoff_id)
        assert handoff is not None
        await db.execute(
            update(Handoff)
            .where(Handoff.id == handoff_id)
            .values(created_at=handoff.created_at - back, queued_at=handoff.queued_at - back)
        )
        await db.execute(
            update(EscalationSchedule)
            .where(EscalationSchedule.handoff_id == handoff_id)
            .values(next_step_at=utcnow() - timedelta(seconds=1))
        )


async def test_the_worker_holds_the_waves_it_writes_to_the_configured_cap(
    database_url: str, smtp: SmtpRecorder
) -> None:
    """Steps and expiries are written by ``lifeline worker``, not by a request: they are capped
    by the worker's own settings too."""
    settings = notification_settings(
        database_url, smtp_host=smtp.host, smtp_port=smtp.port, email_cap_per_hour=2
    )
    async with running_app(settings) as (ctx, client):
        factory = Factory(ctx.sessionmaker)
        team = await factory.team(junior="engineer", a="admin", b="engineer", c="engineer")
        # The escalation's own wave is push only; every email is the worker's to write.
        await put_policy(
            client,
            team.owner,
            steps=[
                step(0, roles=["owner"], channels=["push"]),
                step(10, roles=["owner", "admin", "engineer"], channels=["email"]),
            ],
            expire_after_minutes=20,
        )
        handoff = await escalate(
            client, team["junior"], (await new_session(client, team["junior"]))["id"]
        )
        await settle(ctx, handoff["id"])
        assert smtp.messages == []

        await _travel(ctx, handoff["id"], minutes=10)
        await worker.run(settings, once=True)
        step_emails = {
            r.recipient_user_id: (r.status, r.last_error)
            for r in await deliveries(ctx, handoff["id"])
            if r.kind == "step"
        }
        # In recipient order: two fit the cap of 2, the rest are over it.
        seniors = [team.owner, team["a"], team["b"], team["c"]]
        assert [step_emails[p.id] for p in seniors] == [
            ("sent", None),
            ("sent", None),
            ("skipped", EMAIL_CAP_REACHED),
            ("skipped", EMAIL_CAP_REACHED),
        ]
        assert smtp.recipients() == sorted(p.email for p in seniors[:2])

        # The expiry tells the escalator by email too: the hour's allowance is spent.
        await _travel(ctx, handoff["id"], minutes=10)
        await worker.run(settings, once=True)
        async with ctx.sessionmaker() as db:
            expired = await db.get(Handoff, handoff["id"])
            assert expired is not None and expired.status == HandoffStatus.EXPIRED
        told = [r for r in await deliveries(ctx, handoff["id"]) if r.kind == "expired"]
        assert {(r.recipient_user_id, r.channel) for r in told} == {
            (team["junior"].id, "push"),
            (team["junior"].id, "email"),
        }
        assert _email_outcomes(told) == {team["junior"].id: ("skipped", EMAIL_CAP_REACHED)}
        assert len(smtp.messages) == 2
