"""What the clock does besides steps: expiry, the claim reminder, the auto-release."""

from __future__ import annotations

import csv as csv_module
import io
from datetime import timedelta

import httpx
from sqlalchemy import select, update

from lifeline.ai_sessions.models import Message
from lifeline.context import AppContext
from lifeline.realtime.models import Event
from tests.notifications.conftest import deliveries
from tests.policies.helpers import minutes, now, put_policy, step, sweep, waves
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder

EVERYONE = ["engineer", "admin", "owner"]


async def test_an_escalation_nobody_picks_up_expires_and_the_escalator_is_told(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    await put_policy(
        client,
        team.owner,
        steps=[step(0, roles=EVERYONE), step(20, roles=EVERYONE)],
        expire_after_minutes=30,
    )
    session = await new_session(client, team["junior"])
    start = now()
    handoff = await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()
    assert (await sweep(ctx, minutes(start, 21))).steps.steps == 1
    report = await sweep(ctx, minutes(start, 31))
    assert (report.steps.expired, report.steps.steps) == (1, 0)
    assert (await sweep(ctx, minutes(start, 90))).steps.total == 0

    listed = await client.get(
        f"/api/v1/ai-sessions/{session['id']}/handoffs", headers=team["junior"].headers
    )
    assert listed.json()["items"][0]["status"] == "expired"
    read = await client.get(f"/api/v1/ai-sessions/{session['id']}", headers=team["junior"].headers)
    assert read.json()["status"] == "active"
    assert set(await waves(ctx, handoff["id"])) == {"escalated", "step:0.0.2", "expired:0"}
    told = {
        (r.recipient_user_id, r.channel)
        for r in await deliveries(ctx, handoff["id"])
        if r.kind == "expired"
    }
    assert told == {(team["junior"].id, "push"), (team["junior"].id, "email")}
    mail = smtp.to(team["junior"].email)
    assert len(mail) == 1 and "Expired" in mail[0].message["Subject"]
    async with ctx.sessionmaker() as db:
        types = list(await db.scalars(select(Event.type).order_by(Event.id)))
    assert types[-1] == "handoff.expired"
    # It can be escalated again.
    again = await escalate(client, team["junior"], session["id"])
    assert again["status"] == "open"


async def test_the_claimer_is_asked_once_whether_they_are_still_on_it(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
    claimed_at = now()
    assert (await client.post(f"{base}/claim", headers=team["senior"].headers)).status_code == 200
    await ctx.tasks.drain()
    before = len(smtp.to(team["senior"].email))

    assert (await sweep(ctx, minutes(claimed_at, 200))).steps.claim_reminders == 0
    assert (await sweep(ctx, minutes(claimed_at, 241))).steps.claim_reminders == 1
    assert (await sweep(ctx, minutes(claimed_at, 600))).steps.total == 0
    rows = [r for r in await deliveries(ctx, handoff["id"]) if r.kind == "claim_reminder"]
    assert {(r.recipient_user_id, r.channel) for r in rows} == {
        (team["senior"].id, "push"),
        (team["senior"].id, "email"),
    }
    mail = smtp.to(team["senior"].email)[before:]
    assert len(mail) == 1 and "Still on it?" in mail[0].message["Subject"]


async def test_an_idle_claim_goes_back_to_the_queue_and_the_team_is_told(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin", peer="engineer")
    await put_policy(
        client,
        team.owner,
        steps=[step(0, roles=EVERYONE)],
        claim_reminder_minutes=None,
        auto_release_minutes=60,
    )
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
    claimed_at = now()
    assert (await client.post(f"{base}/claim", headers=team["senior"].headers)).status_code == 200
    # The claimer wrote in the session 50 minutes in: the hour counts from there.
    note = await client.post(
        f"/api/v1/ai-sessions/{session['id']}/messages",
        headers=team["senior"].headers,
        json={"role": "note", "content": "looking"},
    )
    assert note.status_code == 201, note.text
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(Message)
            .where(Message.id == note.json()["id"])
            .values(created_at=claimed_at + timedelta(minutes=50))
        )
    assert (await sweep(ctx, minutes(claimed_at, 61))).steps.auto_released == 0
    assert (await sweep(ctx, minutes(claimed_at, 111))).steps.auto_released == 1

    listed = await client.get(f"{base.rsplit('/', 1)[0]}", headers=team["junior"].headers)
    assert listed.json()["items"][0]["status"] == "open"
    assert listed.json()["items"][0]["claimed_by"] is None
    told = (await waves(ctx, handoff["id"]))["released:1"]
    # Like a release, to the team, and the claimer hears it too.
    assert {u for u, _ in told} == {team.owner.id, team["senior"].id, team["peer"].id}


async def test_analytics_count_expiries_apart_and_the_step_of_each_pick_up(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    await put_policy(
        client,
        team.owner,
        steps=[step(0, roles=EVERYONE), step(5, roles=EVERYONE), step(10, roles=EVERYONE)],
        expire_after_minutes=30,
    )
    start = now()
    picked = []
    for n in range(3):
        session = await new_session(client, team["junior"], title=f"s{n}")
        picked.append((session["id"], (await escalate(client, team["junior"], session["id"]))))
    # Step 2 goes out for all three; one is picked up then, one after step 3, one never.
    await sweep(ctx, minutes(start, 6))
    sid, first = picked[0]
    base = f"/api/v1/ai-sessions/{sid}/handoffs/{first['id']}"
    assert (await client.post(f"{base}/claim", headers=team["senior"].headers)).status_code == 200
    await sweep(ctx, minutes(start, 11))
    sid, second = picked[1]
    base = f"/api/v1/ai-sessions/{sid}/handoffs/{second['id']}"
    assert (await client.post(f"{base}/claim", headers=team["senior"].headers)).status_code == 200
    assert (await sweep(ctx, minutes(start, 31))).steps.expired == 1

    # The scheduler's clock ran half an hour ahead: the window reaches past it.
    window = {"until": (start + timedelta(days=2)).date().isoformat()}
    response = await client.get(
        "/api/v1/analytics/escalations", headers=team.owner.headers, params=window
    )
    body = response.json()
    assert body["totals"]["expired"] == 1 and body["totals"]["cancelled"] == 0
    assert body["claimed_by_step"] == [{"step": 2, "claimed": 1}, {"step": 3, "claimed": 1}]
    columns = ("expired", "claimed_at_step_1", "claimed_at_step_2", "claimed_at_step_3_or_later")
    assert [sum(row[c] for row in body["by_day"]) for c in columns] == [1, 0, 1, 1]
    csv = await client.get(
        "/api/v1/analytics/escalations",
        headers=team.owner.headers,
        params={**window, "format": "csv"},
    )
    # Summed over the days: the half hour the clock ran ahead may cross midnight (UTC).
    rows = list(csv_module.DictReader(io.StringIO(csv.text)))
    assert [sum(int(row[c]) for row in rows) for c in columns] == [1, 0, 1, 1]
