"""The policy on the Settings page (members read, admins and owners edit) and the escalation
timeline on the session page."""

from __future__ import annotations

import json

import httpx

from lifeline.context import AppContext
from tests.policies.helpers import minutes, now, put_policy, step, sweep
from tests.support.factories import Factory, escalate, new_session
from tests.web.conftest import BrowserFactory


async def test_members_read_the_policy_and_managers_edit_it(
    client: httpx.AsyncClient, factory: Factory, browser: BrowserFactory
) -> None:
    team = await factory.team(eng="engineer", lead="admin")
    await put_policy(
        client, team.owner, steps=[step(0, roles=["admin"]), step(5, users=[team["eng"].id])]
    )
    eng = await browser(team["eng"])
    page = await eng.page("/settings")
    assert page.status_code == 200
    assert "Step 2" in page.text and team["eng"].name in page.text
    assert "Save policy" not in page.text
    refused = await eng.post("/settings/escalation-policy", {"policy": "{}"})
    assert refused.status_code == 403

    lead = await browser(team["lead"])
    assert "Save policy" in (await lead.page("/settings")).text
    new_policy = {"steps": [step(0, roles=["engineer"])], "expire_after_minutes": 45}
    saved = await lead.post("/settings/escalation-policy", {"policy": json.dumps(new_policy)})
    assert saved.status_code in (200, 303), saved.text
    read = await client.get("/api/v1/escalation-policy", headers=team["eng"].headers)
    assert read.json()["expire_after_minutes"] == 45
    bad = {"steps": [step(0, roles=["engineer"])], "repeat": 12}
    refused = await lead.post("/settings/escalation-policy", {"policy": json.dumps(bad)})
    assert refused.status_code == 422 and "repeat" in refused.text
    assert (await client.get("/api/v1/escalation-policy", headers=team.owner.headers)).json()[
        "expire_after_minutes"
    ] == 45


async def test_the_session_page_shows_which_step_fired_when_to_whom(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, browser: BrowserFactory
) -> None:
    team = await factory.team(junior="engineer", oncall="engineer", lead="admin")
    await put_policy(
        client,
        team.owner,
        steps=[step(0, users=[team["oncall"].id]), step(5, roles=["admin"], channels=["email"])],
    )
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await sweep(ctx, minutes(now(), 6))
    junior = await browser(team["junior"])
    page = await junior.page(f"/sessions/{session['id']}")
    assert page.status_code == 200
    text = page.text
    assert "Escalation timeline" in text
    assert "Step 1, at the escalation" in text and f"{team['oncall'].name} (email, push)" in text
    assert "Step 2" in text and f"{team['lead'].name} (email)" in text
