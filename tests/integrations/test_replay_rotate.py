"""Replaying deliveries, rotating the signing secret, and the test event."""

from __future__ import annotations

import json
from datetime import timedelta

import httpx
from sqlalchemy import update
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from lifeline.context import AppContext
from lifeline.db import utcnow
from lifeline.integrations.models import WebhookEndpoint
from tests.integrations.conftest import attempts_of, create_webhook, settle, webhook_rows
from tests.support.factories import Factory, escalate, new_session
from tests.support.webhooks import Receiver, Reply


async def test_test_send_delivers_a_signed_webhook_test_event(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(admin="admin")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.claimed"])
    receiver.secrets = [hook["secret"]]
    sent = await client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=team["admin"].headers)
    assert sent.status_code == 202, sent.text
    assert sent.json()["event_type"] == "webhook.test"
    await settle(ctx, travel=False)
    [payload] = receiver.verified
    assert payload["type"] == "webhook.test"
    assert payload["data"]["webhook_id"] == hook["id"]
    listing = await client.get(
        f"/api/v1/webhooks/{hook['id']}/deliveries", headers=team.owner.headers
    )
    [item] = listing.json()["items"]
    assert item["status"] == "sent" and item["attempts"][0]["status_code"] == 200


async def test_replay_one_delivery_signs_it_again_with_the_current_secret(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    [row] = await settle(ctx, travel=False)
    rotated = await client.post(
        f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=team.owner.headers
    )
    receiver.secrets = [rotated.json()["secret"]]
    replay = await client.post(
        f"/api/v1/webhooks/{hook['id']}/deliveries/{row.id}/replay", headers=team.owner.headers
    )
    assert replay.status_code == 202, replay.text
    await settle(ctx, travel=False)
    first, second = receiver.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert second.verified_with == [rotated.json()["secret"]]
    assert second.payload == json.loads(first.body)
    assert len(await attempts_of(ctx, row.id)) == 2
    unknown = await client.post(
        f"/api/v1/webhooks/{hook['id']}/deliveries/{hook['id']}/replay",
        headers=team.owner.headers,
    )
    assert unknown.status_code == 404


async def test_replay_every_failed_delivery_since_a_time(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    receiver.secrets = [hook["secret"]]
    receiver.default = Reply(500, "down")
    started = utcnow()
    for _ in range(2):
        session = await new_session(client, team["junior"])
        await escalate(client, team["junior"], session["id"])
    rows = await settle(ctx)
    assert [r.status for r in rows] == ["failed", "failed"]
    # The endpoint is healthy again.
    receiver.default = Reply(200)
    receiver.received.clear()
    later = await client.post(
        f"/api/v1/webhooks/{hook['id']}/replay",
        headers=team.owner.headers,
        json={"since": (utcnow() + timedelta(minutes=1)).isoformat()},
    )
    assert later.json() == {"replayed": 0}
    replay = await client.post(
        f"/api/v1/webhooks/{hook['id']}/replay",
        headers=team.owner.headers,
        json={"since": started.isoformat()},
    )
    assert replay.status_code == 202, replay.text
    assert replay.json() == {"replayed": 2}
    rows = await settle(ctx, travel=False)
    assert [r.status for r in rows] == ["sent", "sent"]
    assert len(receiver.verified) == 2
    bad = await client.post(
        f"/api/v1/webhooks/{hook['id']}/replay", headers=team.owner.headers, json={"since": "x"}
    )
    assert bad.status_code == 422 and "since" in bad.text


async def test_during_a_rotation_both_secrets_verify_then_only_the_new_one(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team(junior="engineer")
    hook = await create_webhook(client, team.owner, receiver.url, ["handoff.escalated"])
    old_secret = hook["secret"]
    rotated = await client.post(
        f"/api/v1/webhooks/{hook['id']}/rotate-secret", headers=team.owner.headers
    )
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != old_secret
    read = await client.get(f"/api/v1/webhooks/{hook['id']}", headers=team.owner.headers)
    assert "secret" not in read.json()

    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await settle(ctx, travel=False)
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    # A receiver still configured with the old secret and one with the new both verify.
    for secret in (old_secret, new_secret):
        assert Webhook(secret).verify(got.body, got.headers)["type"] == "handoff.escalated"

    # 24 hours later the old secret no longer signs.
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id == hook["id"])
            .values(previous_secret_expires_at=utcnow() - timedelta(seconds=1))
        )
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await settle(ctx, travel=False)
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 1
    assert Webhook(new_secret).verify(got.body, got.headers)["type"] == "handoff.escalated"
    try:
        Webhook(old_secret).verify(got.body, got.headers)
    except WebhookVerificationError:
        pass
    else:
        raise AssertionError("the old secret still verifies after the overlap")
    assert len(await webhook_rows(ctx, hook["id"])) == 2


async def test_replay_of_a_disabled_webhook_is_refused(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, receiver: Receiver
) -> None:
    team = await factory.team()
    hook = await create_webhook(client, team.owner, receiver.url, enabled=False)
    refused = await client.post(
        f"/api/v1/webhooks/{hook['id']}/replay",
        headers=team.owner.headers,
        json={"since": utcnow().isoformat()},
    )
    assert refused.status_code == 409
