"""Silent after Pick Up, provably: no policy notification is sent after a claim commits.

Claims race due steps, many rounds on each database. Each claim stamps the database's own
clock as the last thing its transaction does (so at or before its commit), and every policy
delivery that was sent must have been sent, by the database's record of it, before that.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.handoffs import service as handoffs
from lifeline.notifications.models import POLICY_KINDS, DeliveryStatus
from lifeline.notifications.steps import run_due
from tests.notifications.conftest import deliveries, make_due, relay_of
from tests.policies.helpers import minutes, now, put_policy, step, sweep
from tests.support.factories import Factory, Person, escalate, new_session
from tests.support.smtp import SmtpRecorder

ROUNDS = 15


async def _database_now(db: AsyncSession) -> datetime:
    if db.get_bind().dialect.name == "postgresql":
        stamp = await db.scalar(text("SELECT clock_timestamp()"))
        assert isinstance(stamp, datetime)
        return stamp.astimezone(UTC)
    value = await db.scalar(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))
    return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)


async def _claim(
    ctx: AppContext, person: Person, session_id: str, handoff_id: str, delay: float
) -> datetime:
    await asyncio.sleep(delay)
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        actor = await db.get(User, person.id)
        assert actor is not None
        await handoffs.claim_handoff(
            db=db, actor=actor, session_id=session_id, handoff_id=handoff_id
        )
        return await _database_now(db)


def _ms(moment: datetime) -> datetime:
    """SQLite's clock has milliseconds: compare both sides at that precision."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def test_no_policy_delivery_is_sent_after_the_claim_commits(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin", a="engineer", b="engineer")
    await put_policy(
        client,
        team.owner,
        steps=[
            step(0, users=[team["a"].id]),
            step(1, roles=["engineer", "admin", "owner"]),
        ],
    )
    rng = random.Random(11)
    outcomes = {"sent before the claim": 0, "silenced": 0}
    for n in range(ROUNDS):
        session = await new_session(client, team["junior"], title=f"round {n}")
        handoff = await escalate(client, team["junior"], session["id"])
        await ctx.tasks.drain()
        _report, claimed_by_db = await asyncio.gather(
            sweep(ctx, minutes(now(), 2)),
            _claim(ctx, team["senior"], session["id"], handoff["id"], rng.uniform(0, 0.12)),
        )
        await ctx.tasks.drain()
        await make_due(ctx)
        await relay_of(ctx).sweep()
        rows = [r for r in await deliveries(ctx, handoff["id"]) if r.kind in POLICY_KINDS]
        for row in rows:
            assert row.status in (DeliveryStatus.SENT, DeliveryStatus.SKIPPED), row.status
            if row.status == DeliveryStatus.SENT:
                assert row.sent_at is not None
                assert _ms(row.sent_at) <= _ms(claimed_by_db), (
                    f"round {n}: {row.channel} to {row.recipient_user_id} sent at "
                    f"{row.sent_at}, after the claim committed at {claimed_by_db}"
                )
        if any(r.status == DeliveryStatus.SENT for r in rows):
            outcomes["sent before the claim"] += 1
        else:
            outcomes["silenced"] += 1
        # Nothing is left to fire for a claimed escalation.
        assert (await sweep(ctx, minutes(now(), 60))).steps.steps == 0
    print(outcomes)


async def test_claim_marks_pending_policy_deliveries_skipped_naming_who(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()
    # The step is written but its sender never got to it (a crash after commit).
    await run_due(
        sessionmaker=ctx.sessionmaker,
        runner=AfterCommitRunner(TaskSet()),
        now=minutes(now(), 11),
        email_cap=ctx.settings.email_cap_per_hour,
    )
    pending = [r for r in await deliveries(ctx, handoff["id"]) if r.kind == "step"]
    assert pending and all(r.status == DeliveryStatus.PENDING for r in pending)
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
    claimed = await client.post(f"{base}/claim", headers=team["senior"].headers)
    assert claimed.status_code == 200
    await make_due(ctx)
    await relay_of(ctx).sweep()
    steps = [r for r in await deliveries(ctx, handoff["id"]) if r.kind == "step"]
    assert {(r.status, r.last_error) for r in steps} == {
        (DeliveryStatus.SKIPPED, f"picked up by {team['senior'].name} before it was sent")
    }
