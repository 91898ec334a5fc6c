"""The settings page: my notification preference, password, tokens; the team for admins."""

from __future__ import annotations

import html
import re

import httpx

from tests.support.factories import Factory
from tests.web.conftest import BrowserFactory


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, object]:
    response = await client.get("/api/v1/me", headers=headers)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


async def test_a_member_sets_their_email_preference(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(senior="engineer")
    tab = await browser(team["senior"])
    page = (await tab.page("/settings")).text
    assert 'value="offline_only" checked' in page  # the default for new people
    assert "Invite someone" not in page  # not an admin
    saved = await tab.post("/settings/notifications", {"email_notifications": "always"})
    assert saved.status_code == 303
    assert (await me(client, team["senior"].headers))["email_notifications"] == "always"
    assert "Notification preference saved." in (await tab.page("/settings")).text
    bad = await tab.post("/settings/notifications", {"email_notifications": "sometimes"})
    assert bad.status_code == 422 and "email_notifications" in bad.text


async def test_changing_the_password_needs_the_current_one(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team(senior="engineer")
    tab = await browser(team["senior"])
    wrong = await tab.post(
        "/settings/password", {"current_password": "nope", "new_password": "a new password"}
    )
    assert wrong.status_code == 303
    assert "didn't match" in html.unescape((await tab.page("/settings")).text)
    ok = await tab.post(
        "/settings/password",
        {"current_password": team["senior"].password, "new_password": "a new password"},
    )
    assert ok.status_code == 303
    fresh = await browser()
    assert (await fresh.sign_in(team["senior"].email, "a new password")).status_code == 303
    short = await tab.post("/settings/password", {"current_password": "x", "new_password": "short"})
    assert short.status_code == 422 and "new_password" in short.text


async def test_a_token_is_shown_once_and_can_be_revoked(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(senior="engineer")
    tab = await browser(team["senior"])
    created = await tab.post("/settings/tokens", {"name": "laptop"})
    assert created.status_code == 201
    secret = re.search(r'<code class="secret">(lfl_[^<]+)</code>', created.text)
    assert secret is not None
    headers = {"Authorization": f"Bearer {secret.group(1)}"}
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200
    page = (await tab.page("/settings")).text
    assert secret.group(1) not in page  # shown once
    token_ids = re.findall(r'action="/settings/tokens/([^/]+)/revoke"', page)
    listed = await client.get("/api/v1/tokens", headers=headers)
    laptop = next(t["id"] for t in listed.json()["items"] if t["name"] == "laptop")
    assert laptop in token_ids
    assert (await tab.post(f"/settings/tokens/{laptop}/revoke")).status_code == 303
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401


async def test_an_admin_invites_changes_a_role_removes_and_sets_the_reminder(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(lead="admin", junior="engineer")
    lead = await browser(team["lead"])
    page = (await lead.page("/settings")).text
    assert "Invite someone" in page and team["junior"].email in page

    invited = await lead.post(
        "/settings/members",
        {"email": "New.Person@Example.test", "name": "New Person", "role": "viewer"},
    )
    assert invited.status_code == 201 and "Invited <strong>New Person</strong>" in invited.text
    assert re.search(r'<code class="secret">lfl_', invited.text)
    users = (await client.get("/api/v1/users", headers=team.owner.headers)).json()["items"]
    new = next(u for u in users if u["email"] == "new.person@example.test")
    assert new["role"] == "viewer"

    duplicate = await lead.post(
        "/settings/members", {"email": "new.person@example.test", "role": "viewer"}
    )
    assert duplicate.status_code == 303
    assert "already exists" in (await lead.page("/settings")).text
    invalid = await lead.post("/settings/members", {"email": "not an email", "role": "viewer"})
    assert invalid.status_code == 422 and "email" in invalid.text

    promoted = await lead.post(f"/settings/members/{new['id']}/role", {"role": "engineer"})
    assert promoted.status_code == 303
    read = await client.get(f"/api/v1/users/{new['id']}", headers=team.owner.headers)
    assert read.json()["role"] == "engineer"
    # Only an owner makes owners.
    refused = await lead.post(f"/settings/members/{new['id']}/role", {"role": "owner"})
    assert refused.status_code == 403

    removed = await lead.post(f"/settings/members/{new['id']}/remove")
    assert removed.status_code == 303
    users = (await client.get("/api/v1/users", headers=team.owner.headers)).json()["items"]
    assert new["id"] not in {u["id"] for u in users}

    saved = await lead.post("/settings/account", {"reminder_minutes": "25"})
    assert saved.status_code == 303
    account = await client.get("/api/v1/account", headers=team.owner.headers)
    assert account.json()["reminder_minutes"] == 25
    out_of_range = await lead.post("/settings/account", {"reminder_minutes": "0"})
    assert out_of_range.status_code == 422 and "reminder_minutes" in out_of_range.text


async def test_forged_team_changes_from_an_engineer_are_refused(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    team = await factory.team(junior="engineer", other="engineer")
    junior = await browser(team["junior"])
    attempts = [
        ("/settings/members", {"email": "sneaky@example.test", "role": "admin"}),
        (f"/settings/members/{team['other'].id}/role", {"role": "viewer"}),
        (f"/settings/members/{team['other'].id}/remove", {}),
        ("/settings/account", {"reminder_minutes": "1"}),
    ]
    for url, data in attempts:
        response = await junior.post(url, data)
        assert response.status_code == 403, url
        assert "Admin or owner access required" in response.text
    users = (await client.get("/api/v1/users", headers=team.owner.headers)).json()["items"]
    assert {u["email"] for u in users} == {
        team.owner.email,
        team["junior"].email,
        team["other"].email,
    }
    assert next(u for u in users if u["id"] == team["other"].id)["role"] == "engineer"
    account = await client.get("/api/v1/account", headers=team.owner.headers)
    assert account.json()["reminder_minutes"] == 10


async def test_an_admin_of_another_account_can_not_touch_our_members(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient
) -> None:
    ours = await factory.team(junior="engineer")
    theirs = await factory.team(lead="admin")
    lead = await browser(theirs["lead"])
    assert ours["junior"].email not in (await lead.page("/settings")).text
    response = await lead.post(f"/settings/members/{ours['junior'].id}/remove")
    assert response.status_code == 404
    users = (await client.get("/api/v1/users", headers=ours.owner.headers)).json()["items"]
    assert ours["junior"].id in {u["id"] for u in users}
