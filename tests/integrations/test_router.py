"""Webhook endpoints over the API: who may manage them, what is refused, the secret shown once."""

from __future__ import annotations

import base64

import httpx
import pytest

from lifeline.config import Settings
from tests.integrations.conftest import (
    ALL_EVENTS,
    create_webhook,
    integration_settings,
    running_app,
)
from tests.support.factories import Factory

URL = "http://127.0.0.1:9/hook"


async def test_admin_creates_lists_changes_and_deletes_a_webhook(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(admin="admin")
    created = await create_webhook(
        client, team["admin"], URL, ["handoff.escalated", "handoff.claimed"], description="CI"
    )
    assert created["secret"].startswith("whsec_")
    assert len(base64.b64decode(created["secret"].removeprefix("whsec_"))) == 24
    assert created["event_types"] == ["handoff.escalated", "handoff.claimed"]
    assert created["enabled"] is True and created["description"] == "CI"

    listed = await client.get("/api/v1/webhooks", headers=team.owner.headers)
    assert listed.status_code == 200
    assert [w["id"] for w in listed.json()["items"]] == [created["id"]]
    assert "secret" not in listed.json()["items"][0]
    one = await client.get(f"/api/v1/webhooks/{created['id']}", headers=team.owner.headers)
    assert one.status_code == 200 and "secret" not in one.json()

    changed = await client.patch(
        f"/api/v1/webhooks/{created['id']}",
        headers=team["admin"].headers,
        json={"enabled": False, "event_types": ["session.message"]},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["enabled"] is False
    assert changed.json()["event_types"] == ["session.message"]
    assert changed.json()["description"] == "CI"

    gone = await client.delete(f"/api/v1/webhooks/{created['id']}", headers=team.owner.headers)
    assert gone.status_code == 204
    after = await client.get(f"/api/v1/webhooks/{created['id']}", headers=team.owner.headers)
    assert after.status_code == 404


async def test_only_admins_and_owners_manage_webhooks_of_their_own_account(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer", viewer="viewer")
    other = await factory.team()
    created = await create_webhook(client, team.owner, URL)
    for person in (team["eng"], team["viewer"]):
        listing = await client.get("/api/v1/webhooks", headers=person.headers)
        assert listing.status_code == 403
        made = await client.post(
            "/api/v1/webhooks", headers=person.headers, json={"url": URL, "event_types": ALL_EVENTS}
        )
        assert made.status_code == 403
    for path in ("", "/deliveries"):
        foreign = await client.get(
            f"/api/v1/webhooks/{created['id']}{path}", headers=other.owner.headers
        )
        assert foreign.status_code == 404
    rotate = await client.post(
        f"/api/v1/webhooks/{created['id']}/rotate-secret", headers=other.owner.headers
    )
    assert rotate.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": URL, "event_types": ["handoff.exploded"]}, "event_types"),
        ({"url": URL, "event_types": []}, "event_types"),
        ({"url": URL}, "event_types"),
        ({"url": "ftp://example.com/x", "event_types": ALL_EVENTS}, "url"),
        ({"url": "not a url", "event_types": ALL_EVENTS}, "url"),
        ({"url": "http://user:pw@example.com/", "event_types": ALL_EVENTS}, "url"),
        ({"url": URL, "event_types": ALL_EVENTS, "secret": "whsec_mine"}, "secret"),
        ({"url": URL, "event_types": ALL_EVENTS, "description": "x" * 501}, "description"),
    ],
)
async def test_bad_input_is_a_422_naming_the_field(
    client: httpx.AsyncClient, factory: Factory, body: dict[str, object], field: str
) -> None:
    team = await factory.team()
    response = await client.post("/api/v1/webhooks", headers=team.owner.headers, json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    listed = await client.get("/api/v1/webhooks", headers=team.owner.headers)
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8000/hook",
        "http://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ],
)
async def test_private_loopback_and_metadata_addresses_are_refused(
    database_url: str, url: str
) -> None:
    settings: Settings = integration_settings(database_url, webhook_allow_private=False)
    async with running_app(settings) as (ctx, client):
        team = await Factory(ctx.sessionmaker).team()
        refused = await client.post(
            "/api/v1/webhooks",
            headers=team.owner.headers,
            json={"url": url, "event_types": ALL_EVENTS},
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["detail"].startswith("url:")
        listed = await client.get("/api/v1/webhooks", headers=team.owner.headers)
        assert listed.json()["items"] == []


async def test_changing_the_url_is_vetted_too(database_url: str) -> None:
    settings = integration_settings(database_url, webhook_allow_private=False)
    async with running_app(settings) as (ctx, client):
        team = await Factory(ctx.sessionmaker).team()
        created = await create_webhook(client, team.owner, "https://93.184.215.14/hook")
        refused = await client.patch(
            f"/api/v1/webhooks/{created['id']}",
            headers=team.owner.headers,
            json={"url": "http://10.0.0.1/"},
        )
        assert refused.status_code == 422 and refused.json()["detail"].startswith("url:")
        kept = await client.get(f"/api/v1/webhooks/{created['id']}", headers=team.owner.headers)
        assert kept.json()["url"] == "https://93.184.215.14/hook"
