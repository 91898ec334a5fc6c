"""Slack: the app's configuration, the escalation's message, and Pick Up from Slack.

``slack_sdk``'s async client talks to a local server that answers as Slack's Web API does;
interaction requests are signed with a test signing secret exactly as Slack signs them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.integrations.interactions import UNMATCHED
from tests.integrations.conftest import integration_settings, settle, webhook_rows
from tests.support.factories import Factory, Person, Team, escalate, new_session
from tests.support.slack import (
    BOT_TOKEN,
    CHANNEL_ID,
    SIGNING_SECRET,
    FakeSlack,
    block_action,
    fake_slack,
    signed_request,
)
from tests.support.smtp import SmtpRecorder

INTERACTIONS = "/integrations/slack/interactions"


@pytest.fixture
async def slack_api() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as server:
        yield server


@pytest.fixture
def settings(database_url: str, smtp: SmtpRecorder, slack_api: FakeSlack) -> Settings:
    return integration_settings(
        database_url, smtp_host=smtp.host, smtp_port=smtp.port, slack_api_url=slack_api.url
    )


async def connect(client: httpx.AsyncClient, admin: Person) -> dict[str, Any]:
    response = await client.put(
        "/api/v1/integrations/slack",
        headers=admin.headers,
        json={"bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET, "channel": "#escalations"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def escalated_in_slack(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, slack_api: FakeSlack
) -> tuple[Team, dict[str, Any], dict[str, Any]]:
    team = await factory.team(junior="engineer", ana="engineer", ben="admin", vic="viewer")
    await connect(client, team.owner)
    for key in ("ana", "ben", "vic"):
        slack_api.users[f"U{key.upper()}"] = team[key].email
    session = await new_session(client, team["junior"], title="Deadlock in the migration")
    handoff = await escalate(client, team["junior"], session["id"], note="CI hangs <forever>")
    await settle(ctx)
    return team, session, handoff


def message_text(slack_api: FakeSlack) -> str:
    [message] = slack_api.messages.values()
    return str(message["text"])


def buttons(slack_api: FakeSlack) -> list[str]:
    [message] = slack_api.messages.values()
    actions = next(b for b in message["blocks"] if b["type"] == "actions")
    return [e["action_id"] for e in actions["elements"]]


async def click(
    client: httpx.AsyncClient, handoff_id: str, slack_user: str, **signing: Any
) -> httpx.Response:
    body, headers = signed_request(
        block_action(handoff_id=handoff_id, slack_user_id=slack_user), **signing
    )
    return await client.post(INTERACTIONS, content=body, headers=headers)


async def test_configuring_slack_reads_the_workspace_with_auth_test(
    client: httpx.AsyncClient, factory: Factory, slack_api: FakeSlack
) -> None:
    team = await factory.team(eng="engineer", admin="admin")
    before = await client.get("/api/v1/integrations/slack", headers=team.owner.headers)
    assert before.json() == {
        "connected": False,
        "team_id": None,
        "team_name": None,
        "channel": None,
        "updated_at": None,
    }
    saved = await connect(client, team["admin"])
    assert saved["connected"] is True
    assert saved["team_id"] == "T0LIFELINE" and saved["channel"] == "#escalations"
    assert "bot_token" not in saved and "signing_secret" not in saved
    [call] = slack_api.called("auth.test")
    assert call.token == BOT_TOKEN

    refused = await client.put(
        "/api/v1/integrations/slack",
        headers=team.owner.headers,
        json={"bot_token": "xoxb-wrong", "signing_secret": "s", "channel": "#x"},
    )
    assert refused.status_code == 422
    assert refused.json()["detail"] == "bot_token: Slack refused it (invalid_auth)"
    kept = await client.get("/api/v1/integrations/slack", headers=team.owner.headers)
    assert kept.json()["channel"] == "#escalations"

    engineer = await client.put(
        "/api/v1/integrations/slack",
        headers=team["eng"].headers,
        json={"bot_token": BOT_TOKEN, "signing_secret": "s", "channel": "#x"},
    )
    assert engineer.status_code == 403
    missing = await client.put(
        "/api/v1/integrations/slack", headers=team.owner.headers, json={"bot_token": BOT_TOKEN}
    )
    assert missing.status_code == 422 and "signing_secret" in missing.text

    other = await factory.team()
    taken = await client.put(
        "/api/v1/integrations/slack",
        headers=other.owner.headers,
        json={"bot_token": BOT_TOKEN, "signing_secret": "s", "channel": "#x"},
    )
    assert taken.status_code == 409

    gone = await client.delete("/api/v1/integrations/slack", headers=team.owner.headers)
    assert gone.status_code == 204
    after = await client.get("/api/v1/integrations/slack", headers=team.owner.headers)
    assert after.json()["connected"] is False


async def test_an_escalation_posts_a_block_kit_message_with_pick_up(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, slack_api: FakeSlack
) -> None:
    team, session, handoff = await escalated_in_slack(client, ctx, factory, slack_api)
    [post] = slack_api.called("chat.postMessage")
    assert post.token == BOT_TOKEN and post.args["channel"] == "#escalations"
    blocks = post.args["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Deadlock in the migration", "emoji": False},
    }
    section = blocks[1]["text"]["text"]
    assert f"*{team['junior'].name}* escalated <!date^" in section
    assert ">CI hangs &lt;forever&gt;" in section
    assert blocks[2]["elements"][0]["text"] == "Waiting for someone to pick it up"
    pick_up, open_ = blocks[3]["elements"]
    assert pick_up["action_id"] == "pick_up" and pick_up["value"] == handoff["id"]
    assert open_["url"] == f"http://testserver/sessions/{session['id']}"
    # A row of the outbox, listed with the handoff's deliveries.
    listed = await client.get(
        f"/api/v1/handoffs/{handoff['id']}/deliveries", headers=team.owner.headers
    )
    [row] = [i for i in listed.json()["items"] if i["channel"] == "slack"]
    assert row["status"] == "sent" and row["recipient"] is None


async def test_two_people_click_pick_up_at_once_one_wins_and_the_other_is_told(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, slack_api: FakeSlack
) -> None:
    team, session, handoff = await escalated_in_slack(client, ctx, factory, slack_api)
    first, second = await asyncio.gather(
        click(client, handoff["id"], "UANA"), click(client, handoff["id"], "UBEN")
    )
    assert first.status_code == second.status_code == 200
    await ctx.tasks.drain()
    await settle(ctx)
    read = await client.get(
        f"/api/v1/ai-sessions/{session['id']}/handoffs", headers=team.owner.headers
    )
    [current] = read.json()["items"]
    assert current["status"] == "claimed"
    winner = team["ana"] if current["claimed_by"] == team["ana"].id else team["ben"]
    loser_slack = "UBEN" if winner is team["ana"] else "UANA"
    # The message was updated once, for everyone, and lost its Pick Up button.
    [update] = slack_api.called("chat.update")
    assert update.args["channel"] == CHANNEL_ID
    assert message_text(slack_api).endswith(f"Picked up by {winner.name}")
    assert buttons(slack_api) == ["open"]
    # The loser was told privately who has it; the winner got nothing extra.
    assert slack_api.ephemeral_to(loser_slack) == [f"Already picked up by {winner.name}"]
    assert len(slack_api.called("chat.postEphemeral")) == 1


async def test_a_forged_signature_an_old_timestamp_or_an_unknown_workspace_do_nothing(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, slack_api: FakeSlack
) -> None:
    team, session, handoff = await escalated_in_slack(client, ctx, factory, slack_api)
    forged = await click(client, handoff["id"], "UANA", secret="not-the-signing-secret")
    old = await click(client, handoff["id"], "UANA", timestamp=int(time.time()) - 6 * 60)
    body, headers = signed_request(
        block_action(handoff_id=handoff["id"], slack_user_id="UANA", team_id="T0ELSEWHERE")
    )
    elsewhere = await client.post(INTERACTIONS, content=body, headers=headers)
    body, headers = signed_request(block_action(handoff_id=handoff["id"], slack_user_id="UANA"))
    tampered = await client.post(
        INTERACTIONS, content=body.replace(b"UANA", b"UBEN"), headers=headers
    )
    unsigned = await client.post(INTERACTIONS, content=body)
    garbage = await client.post(INTERACTIONS, content=b"\xff\xfe", headers=headers)
    for response in (forged, old, elsewhere, tampered, unsigned, garbage):
        assert response.status_code == 401, response.text
    await ctx.tasks.drain()
    read = await client.get(
        f"/api/v1/ai-sessions/{session['id']}/handoffs", headers=team.owner.headers
    )
    assert read.json()["items"][0]["status"] == "open"
    assert slack_api.called("users.info") == []
    assert slack_api.called("chat.postEphemeral") == []


async def test_a_viewer_and_an_unknown_slack_user_are_answered_privately(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, slack_api: FakeSlack
) -> None:
    team, session, handoff = await escalated_in_slack(client, ctx, factory, slack_api)
    slack_api.users["USTRANGER"] = "nobody@elsewhere.example"
    assert (await click(client, handoff["id"], "UVIC")).status_code == 200
    assert (await click(client, handoff["id"], "USTRANGER")).status_code == 200
    await ctx.tasks.drain()
    assert slack_api.ephemeral_to("UVIC") == ["Engineer or admin access required"]
    assert slack_api.ephemeral_to("USTRANGER") == [UNMATCHED]
    read = await client.get(
        f"/api/v1/ai-sessions/{session['id']}/handoffs", headers=team.owner.headers
    )
    assert read.json()["items"][0]["status"] == "open"


async def test_a_claim_on_the_web_or_api_updates_the_slack_message(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, slack_api: FakeSlack
) -> None:
    team, session, handoff = await escalated_in_slack(client, ctx, factory, slack_api)
    path = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
    claimed = await client.post(f"{path}/claim", headers=team["ana"].headers)
    assert claimed.status_code == 200
    await settle(ctx)
    assert message_text(slack_api).endswith(f"Picked up by {team['ana'].name}")
    released = await client.post(f"{path}/release", headers=team["ana"].headers)
    assert released.status_code == 200
    await settle(ctx)
    assert message_text(slack_api).endswith("Waiting for someone to pick it up")
    assert buttons(slack_api) == ["pick_up", "open"]
    assert len(slack_api.called("chat.update")) == 2
    assert len(slack_api.called("chat.postMessage")) == 1
    rows = await webhook_rows(ctx)
    assert [r.status for r in rows] == ["sent", "sent", "sent"]


async def test_a_retried_or_replayed_interaction_changes_nothing_twice(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, slack_api: FakeSlack
) -> None:
    team, session, handoff = await escalated_in_slack(client, ctx, factory, slack_api)
    payload = block_action(handoff_id=handoff["id"], slack_user_id="UANA")
    body, headers = signed_request(payload)
    first = await client.post(INTERACTIONS, content=body, headers=headers)
    assert first.status_code == 200
    await ctx.tasks.drain()
    await settle(ctx)
    # Slack retries the same click; someone replays the captured request.
    retry_body, retry_headers = signed_request(payload, retry=1)
    again = await client.post(INTERACTIONS, content=retry_body, headers=retry_headers)
    replay = await client.post(INTERACTIONS, content=body, headers=headers)
    assert again.status_code == replay.status_code == 200
    await ctx.tasks.drain()
    await settle(ctx)
    assert len(slack_api.called("users.info")) == 1
    assert len(slack_api.called("chat.update")) == 1
    assert slack_api.called("chat.postEphemeral") == []
    read = await client.get(
        f"/api/v1/ai-sessions/{session['id']}/handoffs", headers=team.owner.headers
    )
    assert read.json()["items"][0]["claimed_by"] == team["ana"].id


async def test_a_rate_limited_post_is_retried(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, slack_api: FakeSlack
) -> None:
    slack_api.rate_limited["chat.postMessage"] = 1
    team, _session, handoff = await escalated_in_slack(client, ctx, factory, slack_api)
    assert len(slack_api.called("chat.postMessage")) == 2
    assert len(slack_api.messages) == 1
    [row] = [r for r in await webhook_rows(ctx) if r.channel == "slack"]
    assert row.status == "sent" and row.attempts == 2
    assert row.handoff_id == handoff["id"]
    assert team.account.id == row.account_id
