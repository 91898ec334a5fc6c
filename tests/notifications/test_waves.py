"""The escalation's wave: one row in the escalating transaction, expanded after commit into one
push and one email row per recipient (one statement on PostgreSQL, rows built in Python on
SQLite), exactly once, by the escalating process or else by the sweep."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlalchemy import func, select, update

from lifeline.accounts import service as accounts
from lifeline.accounts.models import Role, User
from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.db import run_unit_of_work, unit_of_work, utcnow
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Intent
from lifeline.notifications import outbox
from lifeline.notifications.models import PendingWave
from lifeline.notifications.outbox import EMAIL_CAP_REACHED, OPTED_OUT, message_id_for
from lifeline.notifications.plugin import sweep_once
from tests.notifications.conftest import (
    deliveries,
    notification_settings,
    relay_of,
    running_app,
    settle,
)
from tests.support.factories import Factory, Team, escalate, new_session
from tests.support.smtp import SmtpRecorder

SENIORS = 60
CAP = 20


async def _big_team(factory: Factory) -> tuple[Team, Team]:
    """An owner, a junior, ``SENIORS`` engineers and admins (every 7th opted out of email), a
    viewer and a removed engineer; and another account with an admin."""
    team = await factory.team(junior="engineer", vic="viewer", gone="engineer")
    async with factory.sessionmaker() as db, db.begin():
        for n in range(SENIORS):
            user = await accounts.create_user(
                db=db,
                account_id=team.account.id,
                email=f"senior{n}@{team.account.id[:8]}.example",
                name=f"Senior {n}",
                role=Role.ADMIN if n % 5 == 0 else Role.ENGINEER,
                password=None,
            )
            if n % 7 == 3:
                user.email_notifications = "never"
        gone = await db.get(User, team["gone"].id)
        assert gone is not None
        gone.deleted_at = utcnow()
    other = await factory.team(stranger="admin")
    return team, other


async def _recipients_in_order(factory: Factory, team: Team) -> list[User]:
    async with factory.sessionmaker() as db:
        users = await db.scalars(
            select(User)
            .where(
                User.account_id == team.account.id,
                User.role.in_(["owner", "admin", "engineer"]),
                User.deleted_at.is_(None),
                User.id != team["junior"].id,
            )
            .order_by(User.created_at, User.id)
        )
        return list(users)


async def test_a_big_team_gets_one_push_and_one_email_row_each_opted_out_and_capped_skipped(
    database_url: str, smtp: SmtpRecorder
) -> None:
    settings = notification_settings(
        database_url, smtp_host=smtp.host, smtp_port=smtp.port, email_cap_per_hour=CAP
    )
    async with running_app(settings) as (ctx, client):
        factory = Factory(ctx.sessionmaker)
        team, other = await _big_team(factory)
        recipients = await _recipients_in_order(factory, team)
        assert len(recipients) == SENIORS + 1  # and the owner

        session = await new_session(client, team["junior"])
        handoff = await escalate(client, team["junior"], session["id"])
        rows = await settle(ctx, handoff["id"])

        per_person = Counter((r.recipient_user_id, r.channel) for r in rows)
        assert per_person == Counter(
            {(u.id, channel): 1 for u in recipients for channel in ("push", "email")}
        )
        event_key = f"{handoff['id']}:escalated"
        for r in rows:
            user_id = str(r.recipient_user_id)
            assert r.message_id == message_id_for(event_key, user_id)
            assert r.dedupe_key == f"{event_key}:{user_id}:{r.channel}"
            assert (r.kind, r.account_id) == ("escalated", team.account.id)
        # In recipient order: opted-out people are skipped as such and use none of the cap;
        # the first CAP of the others get an email, the rest are over the cap.
        emails = {
            r.recipient_user_id: (r.status, r.last_error) for r in rows if r.channel == "email"
        }
        expected: dict[str, tuple[str, str | None]] = {}
        left = CAP
        for user in recipients:
            if user.email_notifications == "never":
                expected[user.id] = ("skipped", OPTED_OUT)
            elif left > 0:
                expected[user.id] = ("sent", None)
                left -= 1
            else:
                expected[user.id] = ("skipped", EMAIL_CAP_REACHED)
        assert emails == expected
        assert smtp.recipients() == sorted(
            u.email for u in recipients if expected[u.id][0] == "sent"
        )
        # Tenant scoping and who is never told: nobody outside these rows got anything.
        outsiders = {team["junior"].id, team["vic"].id, team["gone"].id, other["stranger"].id}
        assert not outsiders & {r.recipient_user_id for r in await deliveries(ctx)}
        async with ctx.sessionmaker() as db:
            assert await db.scalar(select(func.count()).select_from(PendingWave)) == 0


async def test_a_wave_never_expanded_is_expanded_once_by_the_sweep_whoever_races_for_it(
    database_url: str, smtp: SmtpRecorder
) -> None:
    settings = notification_settings(database_url, smtp_host=smtp.host, smtp_port=smtp.port)
    async with running_app(settings) as (ctx, client):
        factory = Factory(ctx.sessionmaker)
        team = await factory.team(junior="engineer", a="admin", b="engineer", c="engineer")
        session = await new_session(client, team["junior"])
        # The process dies right after commit: the wave is written, nobody expands it.
        async with unit_of_work(ctx.sessionmaker, AfterCommitRunner(TaskSet())) as db:
            actor = await db.get(User, team["junior"].id)
            assert actor is not None
            handoff = await handoffs.create_handoff(
                db=db,
                actor=actor,
                session_id=session["id"],
                intent=Intent.ESCALATE,
                note="x",
                email_cap=ctx.settings.email_cap_per_hour,
            )
        assert await deliveries(ctx, handoff.id) == []

        # Two expanders race for it (this process's handler and another's sweep, say) …
        async with ctx.sessionmaker() as db:
            wave_id = await db.scalar(select(PendingWave.id))
        assert wave_id is not None
        expanded = await asyncio.gather(
            run_unit_of_work(
                ctx.sessionmaker,
                ctx.after_commit,
                lambda db: outbox.expand_waves(
                    db=db, wave_ids=[wave_id], email_cap=ctx.settings.email_cap_per_hour
                ),
            ),
            run_unit_of_work(
                ctx.sessionmaker,
                ctx.after_commit,
                lambda db: outbox.expand_waves(db=db, email_cap=ctx.settings.email_cap_per_hour),
            ),
        )
        assert sorted(expanded) == [0, 1]
        # … and a sweep afterwards finds nothing left to expand.
        assert (await sweep_once(ctx=ctx, relay=relay_of(ctx))).waves == 0
        rows = await settle(ctx, handoff.id)

        recipients = {team.owner.id, team["a"].id, team["b"].id, team["c"].id}
        assert sorted((r.recipient_user_id, r.channel) for r in rows) == sorted(
            (u, c) for u in recipients for c in ("email", "push")
        )
        assert sorted(smtp.recipients()) == sorted(
            p.email for p in (team.owner, team["a"], team["b"], team["c"])
        )


async def test_the_sweep_expands_a_wave_its_process_never_got_to_and_sends_it(
    database_url: str, smtp: SmtpRecorder
) -> None:
    settings = notification_settings(database_url, smtp_host=smtp.host, smtp_port=smtp.port)
    async with running_app(settings) as (ctx, client):
        factory = Factory(ctx.sessionmaker)
        team = await factory.team(junior="engineer", a="admin")
        session = await new_session(client, team["junior"])
        async with unit_of_work(ctx.sessionmaker, AfterCommitRunner(TaskSet())) as db:
            actor = await db.get(User, team["junior"].id)
            assert actor is not None
            handoff = await handoffs.create_handoff(
                db=db,
                actor=actor,
                session_id=session["id"],
                intent=Intent.ESCALATE,
                note="x",
                email_cap=ctx.settings.email_cap_per_hour,
            )
        # Someone removed meanwhile is not told; the wave goes to the team as it is when it
        # is expanded.
        async with ctx.sessionmaker() as db, db.begin():
            await db.execute(
                update(User).where(User.id == team["a"].id).values(deleted_at=utcnow())
            )

        report = await sweep_once(ctx=ctx, relay=relay_of(ctx))
        assert report.waves == 1
        rows = await settle(ctx, handoff.id)
        assert sorted((r.recipient_user_id, r.channel) for r in rows) == [
            (team.owner.id, "email"),
            (team.owner.id, "push"),
        ]
        assert smtp.recipients() == [team.owner.email]
