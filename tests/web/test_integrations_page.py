"""Settings › Integrations: webhooks (secret once, deliveries, replay, rotate, test), Slack."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import pytest

from lifeline.config import Settings
from lifeline.context import AppContext
from tests.integrations.conftest import integration_settings, settle
from tests.support.factories import Factory
from tests.support.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, fake_slack
from tests.support.webhooks import Receiver, webhook_receiver
from tests.web.conftest import BrowserFactory

SECRET = re.compile(r'<code class="secret">(whsec_[^<]+)</code>')


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as server:
        yield server


@pytest.fixture
async def slack_api() -> AsyncIterator[FakeSlack]:
    async with fake_slack() as server:
        yield server


@pytest.fixture
def settings(database_url: str, slack_api: FakeSlack) -> Settings:
    return integration_settings(database_url, slack_api_url=slack_api.url)


async def test_an_admin_manages_a_webhook_from_the_page(
    browser: BrowserFactory, factory: Factory, ctx: AppContext, receiver: Receiver
) -> None:
    team = await factory.team(admin="admin")
    tab = await browser(team["admin"])
    empty = await tab.page("/settings/integrations")
    assert empty.status_code == 200 and "No webhooks yet." in empty.text
    assert 'href="/settings/integrations"' in (await tab.page("/settings")).text

    created = await tab.client.post(
        "/settings/webhooks",
        data={
            "csrf_token": tab.csrf,
            "url": receiver.url,
            "description": "Pager bridge",
            "event_types": ["handoff.escalated", "handoff.claimed"],
        },
    )
    assert created.status_code == 201, created.text
    found = SECRET.search(created.text)
    assert found, "the secret is shown once, at creation"
    receiver.secrets = [found.group(1)]
    page = await tab.page("/settings/integrations")
    assert receiver.url in page.text and "Pager bridge" in page.text
    assert "whsec_" not in page.text
    webhook_id = re.search(r'data-webhook-id="([^"]+)"', page.text)
    assert webhook_id
    hook = webhook_id.group(1)

    tested = await tab.post(f"/settings/webhooks/{hook}/test")
    assert tested.status_code == 303
    await settle(ctx, travel=False)
    assert [p["type"] for p in receiver.verified] == ["webhook.test"]
    page = await tab.page("/settings/integrations")
    assert "webhook.test" in page.text and "200 · " in page.text
    delivery = re.search(r'data-delivery-id="([^"]+)"', page.text)
    assert delivery

    replayed = await tab.post(f"/settings/webhooks/{hook}/deliveries/{delivery.group(1)}/replay")
    assert replayed.status_code == 303
    await settle(ctx, travel=False)
    assert len(receiver.verified) == 2

    rotated = await tab.post(f"/settings/webhooks/{hook}/rotate")
    assert rotated.status_code == 200
    new_secret = SECRET.search(rotated.text)
    assert new_secret and new_secret.group(1) != receiver.secrets[0]
    assert "also signs for the next 24 hours" in rotated.text

    disabled = await tab.post(f"/settings/webhooks/{hook}/enabled", {"enabled": "false"})
    assert disabled.status_code == 303
    assert "disabled" in (await tab.page("/settings/integrations")).text
    refused = await tab.client.post(
        "/settings/webhooks",
        data={"csrf_token": tab.csrf, "url": "ftp://x", "event_types": ["handoff.claimed"]},
    )
    assert refused.status_code == 303
    shown = html.unescape((await tab.page("/settings/integrations")).text)
    assert "url: must be an http or https URL" in shown
    deleted = await tab.post(f"/settings/webhooks/{hook}/delete")
    assert deleted.status_code == 303
    assert "No webhooks yet." in (await tab.page("/settings/integrations")).text


async def test_an_admin_connects_slack_from_the_page(
    browser: BrowserFactory, factory: Factory, slack_api: FakeSlack
) -> None:
    team = await factory.team()
    tab = await browser(team.owner)
    await tab.page("/settings/integrations")
    saved = await tab.post(
        "/settings/slack",
        {"bot_token": BOT_TOKEN, "signing_secret": SIGNING_SECRET, "channel": "#oncall"},
    )
    assert saved.status_code == 303
    page = html.unescape((await tab.page("/settings/integrations")).text)
    assert "Connected to <strong>Lifeline Test Workspace</strong> (T0LIFELINE)" in page
    assert "<code>#oncall</code>" in page
    assert SIGNING_SECRET not in page and BOT_TOKEN not in page
    wrong = await tab.post(
        "/settings/slack", {"bot_token": "xoxb-nope", "signing_secret": "s", "channel": "#x"}
    )
    assert wrong.status_code == 303
    assert "Slack refused it (invalid_auth)" in html.unescape(
        (await tab.page("/settings/integrations")).text
    )


async def test_engineers_and_viewers_cannot_open_integrations(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team(eng="engineer", vic="viewer")
    for key in ("eng", "vic"):
        tab = await browser(team[key])
        page = await tab.page("/settings/integrations")
        assert page.status_code == 403
        posted = await tab.post("/settings/webhooks", {"url": "https://x.example"})
        assert posted.status_code in (403, 422)
