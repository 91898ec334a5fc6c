"""The scheduler over simulated time: steps, repeats, snapshots, two sweepers, releases."""

from __future__ import annotations

import asyncio

import httpx

from lifeline.context import AppContext
from tests.notifications.conftest import deliveries, running_app
from tests.policies.helpers import minutes, now, put_policy, step, sweep, waves
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder


async def test_three_steps_repeated_once_reach_exactly_their_people(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(
        junior="engineer", oncall="engineer", lead="admin", other="engineer", vic="viewer"
    )
    await put_policy(
        client,
        team.owner,
        steps=[
            step(0, roles=["admin"]),
            step(5, users=[team["oncall"].id], channels=["push"]),
            step(15, roles=["engineer", "admin", "owner"], channels=["email"]),
        ],
        repeat=1,
    )
    session = await new_session(client, team["junior"])
    start = now()
    handoff = await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain()

    fired = []
    # One pass lasts 25 minutes (15, plus the 10 between the last two steps): 0 5 15, 25 30 40.
    for at in (1, 4, 6, 10, 16, 20, 26, 29, 31, 39, 41, 60, 600):
        report = await sweep(ctx, minutes(start, at))
        fired.append((at, report.steps.steps))
    assert [at for at, n in fired if n] == [6, 16, 26, 31, 41]
    assert all(n in (0, 1) for _, n in fired)

    lead, oncall, other, owner = team["lead"].id, team["oncall"].id, team["other"].id, team.owner.id
    both = {"push", "email"}
    admins = {(lead, c) for c in both}
    seniors_email = {(u, "email") for u in (lead, oncall, other, owner)}
    assert await waves(ctx, handoff["id"]) == {
        "escalated": admins,
        "step:0.0.2": {(oncall, "push")},
        "step:0.0.3": seniors_email,
        "step:0.1.1": admins,
        "step:0.1.2": {(oncall, "push")},
        "step:0.1.3": seniors_email,
    }
    # Never the viewer, never the escalator.
    assert smtp.to(team["vic"].email) == [] and smtp.to(team["junior"].email) == []
    assert len(smtp.to(team["lead"].email)) == 4  # escalated, step 3, loop 2's step 1 and 3


async def test_an_escalation_keeps_the_policy_it_was_raised_under(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", a="engineer", b="engineer")
    await put_policy(
        client, team.owner, steps=[step(0, users=[team["a"].id]), step(5, users=[team["a"].id])]
    )
    session = await new_session(client, team["junior"])
    start = now()
    handoff = await escalate(client, team["junior"], session["id"])
    # Edited afterwards: only escalations raised from now on follow the new one.
    await put_policy(
        client, team.owner, steps=[step(0, users=[team["b"].id]), step(2, users=[team["b"].id])]
    )
    assert (await sweep(ctx, minutes(start, 3))).steps.steps == 0
    assert (await sweep(ctx, minutes(start, 6))).steps.steps == 1
    assert await waves(ctx, handoff["id"]) == {
        "escalated": {(team["a"].id, "push"), (team["a"].id, "email")},
        "step:0.0.2": {(team["a"].id, "push"), (team["a"].id, "email")},
    }
    later = await new_session(client, team["junior"], title="later")
    second = await escalate(client, team["junior"], later["id"])
    await sweep(ctx, minutes(now(), 3))
    assert set(await waves(ctx, second["id"])) == {"escalated", "step:0.0.2"}
    assert {u for u, _ in (await waves(ctx, second["id"]))["step:0.0.2"]} == {team["b"].id}


async def test_two_sweepers_racing_one_due_step_fire_it_once(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    handoffs = []
    for n in range(5):
        session = await new_session(client, team["junior"], title=f"race {n}")
        handoffs.append(await escalate(client, team["junior"], session["id"]))
    await ctx.tasks.drain()
    at = minutes(now(), 11)
    async with running_app(ctx.settings) as (other, _client):
        reports = await asyncio.gather(sweep(ctx, at), sweep(other, at))
        await other.tasks.drain()
    assert sum(r.steps.steps for r in reports) == 5
    for handoff in handoffs:
        rows = [r for r in await deliveries(ctx, handoff["id"]) if r.kind == "step"]
        assert len(rows) == 4  # owner and senior, push and email: once each
    assert len(smtp.to(team["senior"].email)) == 10


async def test_release_puts_it_back_on_its_policy_from_step_one(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", first="engineer", second="admin")
    await put_policy(
        client,
        team.owner,
        steps=[step(0, users=[team["first"].id]), step(5, users=[team["second"].id])],
    )
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    assert (await sweep(ctx, minutes(now(), 6))).steps.steps == 1
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
    assert (await client.post(f"{base}/claim", headers=team["second"].headers)).status_code == 200
    assert (await client.post(f"{base}/release", headers=team["second"].headers)).status_code == 200
    released_at = now()
    await ctx.tasks.drain()
    assert (await sweep(ctx, minutes(released_at, 3))).steps.steps == 0  # counts from the release
    assert (await sweep(ctx, minutes(released_at, 6))).steps.steps == 1
    first, second = team["first"].id, team["second"].id
    assert await waves(ctx, handoff["id"]) == {
        "escalated": {(first, "push"), (first, "email")},
        "step:0.0.2": {(second, "push"), (second, "email")},
        "released:1": {(first, "push"), (first, "email")},
        "step:1.0.2": {(second, "push"), (second, "email")},
    }
