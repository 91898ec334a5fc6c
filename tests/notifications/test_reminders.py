"""The default escalation policy: one reminder wave (its second step) for an escalation still
open after the account's reminder interval."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx

from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.notifications.plugin import sweep_once
from tests.notifications.conftest import deliveries, relay_of, running_app
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder


async def _sweep_at(ctx: AppContext, minutes: float) -> int:
    report = await sweep_once(
        ctx=ctx, relay=relay_of(ctx), now=utcnow() + timedelta(minutes=minutes)
    )
    await ctx.tasks.drain()
    return report.steps.steps


async def test_open_escalation_gets_one_reminder_wave_after_the_interval(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin", vic="viewer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()

    assert await _sweep_at(ctx, 9) == 0  # the default interval is 10 minutes
    assert await _sweep_at(ctx, 11) == 1
    assert await _sweep_at(ctx, 30) == 0  # one reminder, not one per sweep

    rows = await deliveries(ctx, handoff["id"])
    reminders = sorted((r.recipient_user_id, r.channel) for r in rows if r.kind == "step")
    assert reminders == sorted(
        (p.id, c) for p in (team.owner, team["senior"]) for c in ("email", "push")
    )
    senior_mail = smtp.to(team["senior"].email)
    assert len(senior_mail) == 2
    assert "Reminder, still open" in senior_mail[1].message["Subject"]
    assert senior_mail[1].message["In-Reply-To"] == senior_mail[0].message_id
    assert smtp.to(team["vic"].email) == [] and smtp.to(team["junior"].email) == []


async def test_account_reminder_interval_is_respected(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    changed = await client.patch(
        "/api/v1/account", headers=team.owner.headers, json={"reminder_minutes": 30}
    )
    assert changed.status_code == 200, changed.text
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])

    assert await _sweep_at(ctx, 20) == 0
    assert await _sweep_at(ctx, 31) == 1


async def test_claimed_or_cancelled_escalations_get_no_reminder(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    claimed = await new_session(client, team["junior"], title="claimed")
    cancelled = await new_session(client, team["junior"], title="cancelled")
    a = await escalate(client, team["junior"], claimed["id"])
    b = await escalate(client, team["junior"], cancelled["id"])
    base = "/api/v1/ai-sessions"
    r1 = await client.post(
        f"{base}/{claimed['id']}/handoffs/{a['id']}/claim", headers=team["senior"].headers
    )
    r2 = await client.post(
        f"{base}/{cancelled['id']}/handoffs/{b['id']}/cancel", headers=team["junior"].headers
    )
    assert (r1.status_code, r2.status_code) == (200, 200)

    assert await _sweep_at(ctx, 60) == 0


async def test_two_sweepers_send_one_reminder_wave(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()

    async with running_app(ctx.settings) as (other, _client):
        counts = await asyncio.gather(_sweep_at(ctx, 11), _sweep_at(other, 11))
        await other.tasks.drain()

    assert sorted(counts) == [0, 1]
    reminder_rows = [r for r in await deliveries(ctx, handoff["id"]) if r.kind == "step"]
    assert len(reminder_rows) == 4
    assert len(smtp.to(team["senior"].email)) == 2


async def test_a_released_escalation_restarts_its_reminder_clock(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    assert await _sweep_at(ctx, 11) == 1
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
    await client.post(f"{base}/claim", headers=team["senior"].headers)
    await client.post(f"{base}/release", headers=team["senior"].headers)

    assert await _sweep_at(ctx, 5) == 0  # counts from the release, not the escalation
    assert await _sweep_at(ctx, 11) == 1
    keys = {r.event_key for r in await deliveries(ctx, handoff["id"]) if r.kind == "step"}
    assert keys == {f"{handoff['id']}:step:0.0.2", f"{handoff['id']}:step:1.0.2"}
