"""Team management, the caller's profile and API tokens over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from lifeline.accounts.models import User
from lifeline.context import AppContext
from lifeline.demo import DEMO_PASSWORD
from tests.support.factories import Factory, Person, Team, escalate, new_session

API = "/api/v1"


async def invite(client: httpx.AsyncClient, actor: Person, **body: Any) -> httpx.Response:
    return await client.post(f"{API}/users", headers=actor.headers, json=body)


async def role_of(client: httpx.AsyncClient, team: Team, user_id: str) -> str:
    response = await client.get(f"{API}/users/{user_id}", headers=team.owner.headers)
    assert response.status_code == 200, response.text
    role: str = response.json()["role"]
    return role


# --- invite -------------------------------------------------------------------------------


async def test_admin_invites_a_member_who_can_use_the_api_at_once(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(adm="admin")

    response = await invite(
        client, team["adm"], email="  New.Person@Example.COM ", name="New Person", role="engineer"
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"user", "token"}
    user = body["user"]
    assert user["email"] == "new.person@example.com"
    assert user["role"] == "engineer" and user["name"] == "New Person"
    assert user["account_id"] == team.account.id and user["deleted_at"] is None
    # Emailed only while not reached live, as the design intends for new people.
    assert user["email_notifications"] == "offline_only"
    assert body["token"].startswith("lfl_")
    me = await client.get(f"{API}/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["id"] == user["id"]
    listed = await client.get(f"{API}/users", headers=team["adm"].headers)
    assert user["id"] in [u["id"] for u in listed.json()["items"]]


async def test_only_admins_and_owners_invite(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer", vic="viewer")
    for person in (team["eng"], team["vic"]):
        response = await invite(client, person, email=f"x-{person.id}@example.com")
        assert response.status_code == 403
        assert response.json() == {"detail": "Admin or owner access required"}
    listed = await client.get(f"{API}/users", headers=team.owner.headers)
    assert len(listed.json()["items"]) == 3


async def test_admin_cannot_create_an_owner_but_an_owner_can(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(adm="admin")
    denied = await invite(client, team["adm"], email="boss@example.com", role="owner")
    assert denied.status_code == 403
    assert denied.json() == {"detail": "Only an owner can change an owner or make one"}

    made = await invite(client, team.owner, email="boss@example.com", role="owner")
    assert made.status_code == 201 and made.json()["user"]["role"] == "owner"


async def test_an_email_is_taken_once_across_accounts(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team()
    other = await factory.team()
    first = await invite(client, team.owner, email="dup@example.com")
    assert first.status_code == 201
    for actor, email in ((team.owner, "dup@example.com"), (other.owner, "DUP@example.com")):
        again = await invite(client, actor, email=email)
        assert again.status_code == 409
        assert "dup@example.com" in again.json()["detail"]


async def test_invite_with_a_password_stores_an_argon2_hash(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team()
    response = await invite(
        client, team.owner, email="pw@example.com", password="a long passphrase"
    )
    assert response.status_code == 201
    async with ctx.sessionmaker() as db:
        user = await db.get(User, response.json()["user"]["id"])
    assert user is not None and user.password_hash is not None
    assert user.password_hash.startswith("$argon2id$")
    assert "a long passphrase" not in user.password_hash


# --- change role --------------------------------------------------------------------------


async def test_admin_changes_roles_and_the_change_applies_at_once(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(adm="admin", eng="engineer", junior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])

    demoted = await client.patch(
        f"{API}/users/{team['eng'].id}", headers=team["adm"].headers, json={"role": "viewer"}
    )

    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["role"] == "viewer"
    claim = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim",
        headers=team["eng"].headers,
    )
    assert claim.status_code == 403
    assert claim.json() == {"detail": "Engineer or admin access required"}
    renamed = await client.patch(
        f"{API}/users/{team['eng'].id}", headers=team["adm"].headers, json={"name": "Evan"}
    )
    assert renamed.json()["name"] == "Evan" and renamed.json()["role"] == "viewer"


async def test_only_an_owner_touches_owners(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(adm="admin", eng="engineer")
    promote = await client.patch(
        f"{API}/users/{team['eng'].id}", headers=team["adm"].headers, json={"role": "owner"}
    )
    assert promote.status_code == 403
    demote_owner = await client.patch(
        f"{API}/users/{team.owner.id}", headers=team["adm"].headers, json={"role": "viewer"}
    )
    assert demote_owner.status_code == 403
    self_promote = await client.patch(
        f"{API}/users/{team['adm'].id}", headers=team["adm"].headers, json={"role": "owner"}
    )
    assert self_promote.status_code == 403
    assert await role_of(client, team, team["eng"].id) == "engineer"
    assert await role_of(client, team, team.owner.id) == "owner"
    assert await role_of(client, team, team["adm"].id) == "admin"
    by_engineer = await client.patch(
        f"{API}/users/{team['adm'].id}", headers=team["eng"].headers, json={"role": "viewer"}
    )
    assert by_engineer.status_code == 403


async def test_the_last_owner_cannot_be_demoted(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team()
    response = await client.patch(
        f"{API}/users/{team.owner.id}", headers=team.owner.headers, json={"role": "admin"}
    )
    assert response.status_code == 409
    assert response.json() == {"detail": "The account's last owner can't be demoted"}
    assert await role_of(client, team, team.owner.id) == "owner"

    # With a second owner, one may step down; then the other is the last one.
    second = await invite(client, team.owner, email="second@example.com", role="owner")
    second_headers = {"Authorization": f"Bearer {second.json()['token']}"}
    step_down = await client.patch(
        f"{API}/users/{team.owner.id}", headers=team.owner.headers, json={"role": "admin"}
    )
    assert step_down.status_code == 200
    last = await client.patch(
        f"{API}/users/{second.json()['user']['id']}", headers=second_headers, json={"role": "admin"}
    )
    assert last.status_code == 409


async def test_two_owners_demoting_each_other_at_once_leave_one(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """Read-then-write would let both through and leave the account without an owner."""
    for _round in range(3):
        team = await factory.team()
        second = await invite(
            client, team.owner, email=f"o2-{team.account.id}@example.com", role="owner"
        )
        second_id = second.json()["user"]["id"]
        second_headers = {"Authorization": f"Bearer {second.json()['token']}"}
        results = await asyncio.gather(
            client.patch(
                f"{API}/users/{second_id}", headers=team.owner.headers, json={"role": "admin"}
            ),
            client.patch(
                f"{API}/users/{team.owner.id}", headers=second_headers, json={"role": "admin"}
            ),
        )
        # The loser either finds itself demoted already (403) or the other the last owner (409).
        codes = sorted(r.status_code for r in results)
        assert codes in ([200, 403], [200, 409]), [r.text for r in results]
        listed = await client.get(f"{API}/users", headers=team.owner.headers)
        roles = {u["id"]: u["role"] for u in listed.json()["items"]}
        assert [roles[team.owner.id], roles[second_id]].count("owner") == 1


# --- soft delete --------------------------------------------------------------------------


async def test_soft_delete_stops_the_users_tokens_at_once(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(adm="admin", eng="engineer")
    extra = await client.post(f"{API}/tokens", headers=team["eng"].headers, json={"name": "ci"})
    extra_headers = {"Authorization": f"Bearer {extra.json()['token']}"}
    assert (await client.get(f"{API}/me", headers=extra_headers)).status_code == 200

    response = await client.delete(f"{API}/users/{team['eng'].id}", headers=team["adm"].headers)

    assert response.status_code == 204 and response.content == b""
    for headers in (team["eng"].headers, extra_headers):
        denied = await client.get(f"{API}/me", headers=headers)
        assert denied.status_code == 401
        assert denied.headers["www-authenticate"] == "Bearer"
    listed = await client.get(f"{API}/users", headers=team["adm"].headers)
    assert team["eng"].id not in [u["id"] for u in listed.json()["items"]]
    read = await client.get(f"{API}/users/{team['eng'].id}", headers=team["adm"].headers)
    assert read.status_code == 200 and read.json()["deleted_at"] is not None
    async with ctx.sessionmaker() as db:
        user = await db.get(User, team["eng"].id)
    assert user is not None and user.deleted_at is not None  # a soft delete: the row stays
    again = await client.delete(f"{API}/users/{team['eng'].id}", headers=team["adm"].headers)
    assert again.status_code == 404
    change = await client.patch(
        f"{API}/users/{team['eng'].id}", headers=team["adm"].headers, json={"role": "admin"}
    )
    assert change.status_code == 404


async def test_soft_deleted_user_cannot_sign_in_on_the_web(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext, app: FastAPI
) -> None:
    """Even a web session cookie that was valid stops working."""
    from lifeline.accounts import security
    from lifeline.accounts.models import WebSession
    from lifeline.db import utcnow

    team = await factory.team(eng="engineer")
    secret = "web-session-secret-for-the-test"
    async with ctx.sessionmaker() as db, db.begin():
        db.add(
            WebSession(
                user_id=team["eng"].id,
                token_hash=security.hash_secret(secret),
                csrf_token="csrf",
                expires_at=utcnow().replace(year=utcnow().year + 1),
            )
        )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        browser.cookies.set("lifeline_session", secret)
        assert (await browser.get(f"{API}/me")).status_code == 200
        removed = await client.delete(f"{API}/users/{team['eng'].id}", headers=team.owner.headers)
        assert removed.status_code == 204
        assert (await browser.get(f"{API}/me")).status_code == 401


async def test_removing_a_claimer_puts_their_pick_ups_back_in_the_queue(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", other="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    claim = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim",
        headers=team["senior"].headers,
    )
    assert claim.status_code == 200

    removed = await client.delete(f"{API}/users/{team['senior'].id}", headers=team.owner.headers)

    assert removed.status_code == 204
    queue = await client.get(f"{API}/ai-sessions/queue", headers=team["other"].headers)
    assert [i["id"] for i in queue.json()["items"]] == [handoff["id"]]
    read = await client.get(f"{API}/ai-sessions/{session['id']}", headers=team["other"].headers)
    assert read.json()["assigned_to"] is None and read.json()["status"] == "escalated"
    # Someone still here picks it up.
    again = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim",
        headers=team["other"].headers,
    )
    assert again.status_code == 200 and again.json()["claimed_by"] == team["other"].id


async def test_removal_rules(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(adm="admin", eng="engineer")
    self_delete = await client.delete(f"{API}/users/{team.owner.id}", headers=team.owner.headers)
    assert self_delete.status_code == 409
    assert self_delete.json() == {"detail": "You can't remove yourself"}
    admin_on_owner = await client.delete(
        f"{API}/users/{team.owner.id}", headers=team["adm"].headers
    )
    assert admin_on_owner.status_code == 403
    by_engineer = await client.delete(f"{API}/users/{team['adm'].id}", headers=team["eng"].headers)
    assert by_engineer.status_code == 403
    assert (await client.get(f"{API}/me", headers=team.owner.headers)).status_code == 200
    assert (await client.get(f"{API}/me", headers=team["adm"].headers)).status_code == 200


# --- /me ------------------------------------------------------------------------------------


async def test_me_reads_the_profile_and_account(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer")
    response = await client.get(f"{API}/me", headers=team["eng"].headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == team["eng"].id and body["email"] == team["eng"].email
    assert body["role"] == "engineer" and body["email_notifications"] == "offline_only"
    assert body["account"] == {
        "id": team.account.id,
        "name": team.account.name,
        "reminder_minutes": 10,
    }
    assert "password_hash" not in body and "token" not in response.text


@pytest.mark.parametrize("preference", ["always", "offline_only", "never"])
async def test_me_sets_the_email_preference(
    client: httpx.AsyncClient, factory: Factory, preference: str
) -> None:
    team = await factory.team(eng="engineer")
    response = await client.patch(
        f"{API}/me", headers=team["eng"].headers, json={"email_notifications": preference}
    )
    assert response.status_code == 200, response.text
    assert response.json()["email_notifications"] == preference
    read = await client.get(f"{API}/me", headers=team["eng"].headers)
    assert read.json()["email_notifications"] == preference


async def test_me_refuses_unknown_preferences_and_fields(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer")
    for body, field in (
        ({"email_notifications": "sometimes"}, "email_notifications"),
        ({"email_notifications": None, "role": "owner"}, "role"),
        ({"account_id": team.account.id}, "account_id"),
        ({"name": ""}, "name"),
    ):
        response = await client.patch(f"{API}/me", headers=team["eng"].headers, json=body)
        assert response.status_code == 422, body
        assert field in [e["loc"][-1] for e in response.json()["detail"]]
    read = (await client.get(f"{API}/me", headers=team["eng"].headers)).json()
    assert read["role"] == "engineer" and read["email_notifications"] == "offline_only"


async def test_me_password_change_needs_the_current_password(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(eng="engineer")

    async def stored_hash() -> str | None:
        async with ctx.sessionmaker() as db:
            return await db.scalar(select(User.password_hash).where(User.id == team["eng"].id))

    before = await stored_hash()
    for current in ("wrong password", None):
        body: dict[str, Any] = {"password": "a brand new passphrase"}
        if current is not None:
            body["current_password"] = current
        wrong = await client.patch(f"{API}/me", headers=team["eng"].headers, json=body)
        assert wrong.status_code == 403
        assert "current_password" in wrong.json()["detail"]
    assert await stored_hash() == before

    changed = await client.patch(
        f"{API}/me",
        headers=team["eng"].headers,
        json={"password": "a brand new passphrase", "current_password": team["eng"].password},
    )
    assert changed.status_code == 200
    after = await stored_hash()
    assert after is not None and after != before and after.startswith("$argon2id$")
    short = await client.patch(
        f"{API}/me",
        headers=team["eng"].headers,
        json={"password": "short", "current_password": "a brand new passphrase"},
    )
    assert short.status_code == 422
    assert short.json()["detail"][0]["loc"] == ["body", "password"]


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("elevenchars", "at least 12 characters"),
        ("qwerty123456", "most commonly used"),
        ("1QAZ2WSX3EDC", "most commonly used"),
        ("1q2w3e4r5t6y", "most commonly used"),
    ],
)
async def test_short_or_common_passwords_are_refused_everywhere(
    client: httpx.AsyncClient, factory: Factory, password: str, why: str
) -> None:
    team = await factory.team(eng="engineer")
    mine = await client.patch(
        f"{API}/me",
        headers=team["eng"].headers,
        json={"password": password, "current_password": team["eng"].password},
    )
    invited = await client.post(
        f"{API}/users",
        headers=team.owner.headers,
        json={"email": "new@example.test", "password": password},
    )
    for response in (mine, invited):
        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "password"] and why in error["msg"]
        assert password not in response.text


async def test_the_demo_password_and_a_passphrase_are_accepted(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer")
    for password in (DEMO_PASSWORD, "violet staple engine 42"):
        response = await client.post(
            f"{API}/users",
            headers=team.owner.headers,
            json={"email": f"{len(password)}@example.test", "password": password},
        )
        assert response.status_code == 201, response.text


# --- account ----------------------------------------------------------------------------


async def test_account_settings_are_for_admins(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(adm="admin", eng="engineer")
    denied = await client.patch(
        f"{API}/account", headers=team["eng"].headers, json={"reminder_minutes": 5}
    )
    assert denied.status_code == 403
    changed = await client.patch(
        f"{API}/account", headers=team["adm"].headers, json={"reminder_minutes": 5, "name": "Ops"}
    )
    assert changed.status_code == 200
    assert changed.json() == {"id": team.account.id, "name": "Ops", "reminder_minutes": 5}
    for bad in (0, 1441, "soon"):
        response = await client.patch(
            f"{API}/account", headers=team["adm"].headers, json={"reminder_minutes": bad}
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "reminder_minutes"]
    read = await client.get(f"{API}/account", headers=team["eng"].headers)
    assert read.json()["reminder_minutes"] == 5


# --- tokens -----------------------------------------------------------------------------


async def test_tokens_are_created_listed_and_revoked(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer", peer="engineer")
    created = await client.post(f"{API}/tokens", headers=team["eng"].headers, json={"name": "ci"})
    assert created.status_code == 201
    body = created.json()
    secret = body["token"]
    assert secret.startswith("lfl_") and len(secret) > 40
    assert body["prefix"] == secret[: len(body["prefix"])] and body["name"] == "ci"
    new_headers = {"Authorization": f"Bearer {secret}"}
    assert (await client.get(f"{API}/me", headers=new_headers)).status_code == 200

    listed = await client.get(f"{API}/tokens", headers=team["eng"].headers)
    assert body["id"] in [t["id"] for t in listed.json()["items"]]
    assert secret not in listed.text  # shown once, never again
    assert "token" not in listed.json()["items"][0]
    # A peer can neither see nor revoke it.
    peer_list = await client.get(f"{API}/tokens", headers=team["peer"].headers)
    assert body["id"] not in [t["id"] for t in peer_list.json()["items"]]
    by_peer = await client.delete(f"{API}/tokens/{body['id']}", headers=team["peer"].headers)
    assert by_peer.status_code == 404
    assert (await client.get(f"{API}/me", headers=new_headers)).status_code == 200

    revoked = await client.delete(f"{API}/tokens/{body['id']}", headers=team["eng"].headers)

    assert revoked.status_code == 204
    denied = await client.get(f"{API}/me", headers=new_headers)
    assert denied.status_code == 401
    assert denied.json() == {"detail": "Invalid or revoked API token"}
    # The user's other token is untouched.
    assert (await client.get(f"{API}/me", headers=team["eng"].headers)).status_code == 200
    after = await client.get(f"{API}/tokens", headers=team["eng"].headers)
    (row,) = [t for t in after.json()["items"] if t["id"] == body["id"]]
    assert row["revoked_at"] is not None


async def test_token_list_is_paginated(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer")
    for n in range(4):
        response = await client.post(
            f"{API}/tokens", headers=team["eng"].headers, json={"name": f"t{n}"}
        )
        assert response.status_code == 201
    first = await client.get(f"{API}/tokens", params={"limit": 3}, headers=team["eng"].headers)
    second = await client.get(
        f"{API}/tokens",
        params={"limit": 3, "cursor": first.json()["next_cursor"]},
        headers=team["eng"].headers,
    )
    names = [t["name"] for t in first.json()["items"] + second.json()["items"]]
    assert names == ["t3", "t2", "t1", "t0", "test"]
    assert second.json()["next_cursor"] is None


async def test_user_list_is_paginated(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(a="engineer", b="viewer", c="admin")
    ids: list[str] = []
    cursor = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get(f"{API}/users", params=params, headers=team["b"].headers)
        ids += [u["id"] for u in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert ids == [team.owner.id, team["a"].id, team["b"].id, team["c"].id]


async def test_last_used_is_recorded(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(eng="engineer")
    assert (await client.get(f"{API}/me", headers=team["eng"].headers)).status_code == 200
    tokens = await client.get(f"{API}/tokens", headers=team["eng"].headers)
    assert tokens.json()["items"][0]["last_used_at"] is not None


@pytest.mark.parametrize(
    "header",
    ["Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer lfl_notarealtoken", "Bearer nope", "lfl_x"],
)
async def test_bad_credentials_are_401(
    client: httpx.AsyncClient, factory: Factory, header: str
) -> None:
    await factory.team()
    response = await client.get(f"{API}/me", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str)


async def test_no_credentials_is_401(client: httpx.AsyncClient) -> None:
    for path in ("/me", "/users", "/tokens", "/ai-sessions", "/account"):
        response = await client.get(f"{API}{path}")
        assert response.status_code == 401, path
        assert response.json() == {"detail": "Authentication required"}


async def test_viewer_and_engineer_see_their_team(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(vic="viewer")
    response = await client.get(f"{API}/users/{team.owner.id}", headers=team["vic"].headers)
    assert response.status_code == 200
    assert response.json()["role"] == "owner"
    async with ctx.sessionmaker() as db:
        count = len((await db.scalars(select(User))).all())
    assert count == 2


async def test_demoting_a_claimer_to_viewer_returns_their_pick_ups(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", other="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    claim_path = f"{API}/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim"
    assert (await client.post(claim_path, headers=team["senior"].headers)).status_code == 200
    # Another role that can still pick up keeps the claim.
    kept = await client.patch(
        f"{API}/users/{team['senior'].id}", headers=team.owner.headers, json={"role": "admin"}
    )
    assert kept.status_code == 200
    claimed = await client.get(
        f"{API}/ai-sessions/queue", params={"status": "claimed"}, headers=team.owner.headers
    )
    assert [i["id"] for i in claimed.json()["items"]] == [handoff["id"]]

    demoted = await client.patch(
        f"{API}/users/{team['senior'].id}", headers=team.owner.headers, json={"role": "viewer"}
    )

    assert demoted.status_code == 200
    queue = await client.get(f"{API}/ai-sessions/queue", headers=team["other"].headers)
    assert [i["id"] for i in queue.json()["items"]] == [handoff["id"]]
    assert (await client.post(claim_path, headers=team["other"].headers)).status_code == 200


async def test_a_removed_member_is_no_longer_notified(
    client: httpx.AsyncClient, factory: Factory, ctx: AppContext
) -> None:
    from lifeline.notifications.models import Delivery

    team = await factory.team(junior="engineer", gone="engineer", stays="engineer")
    removed = await client.delete(f"{API}/users/{team['gone'].id}", headers=team.owner.headers)
    assert removed.status_code == 204
    session = await new_session(client, team["junior"])
    await escalate(client, team["junior"], session["id"])
    await ctx.tasks.drain(wait_seconds=10)
    async with ctx.sessionmaker() as db:
        recipients = set(await db.scalars(select(Delivery.recipient_user_id)))
    assert team["gone"].id not in recipients
    assert {team["stays"].id, team.owner.id} <= recipients


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Alice\r\nBcc: eve@evil.test", "Alice Bcc: eve@evil.test"),
        ("Mallory\u202eecilA", "MalloryecilA"),
        ("Ali\u200bce\u200d", "Alice"),
        ("Bob\u2066 (admin)\u2069", "Bob (admin)"),
        ("  Carol\tDanvers  ", "Carol Danvers"),
        ("Zoë Ñandú 李", "Zoë Ñandú 李"),
    ],
)
async def test_display_names_lose_control_bidi_and_zero_width_characters(
    client: httpx.AsyncClient, factory: Factory, given: str, stored: str
) -> None:
    team = await factory.team(eng="engineer")
    invited = await client.post(
        f"{API}/users",
        headers=team.owner.headers,
        json={"email": "spoof@example.test", "name": given},
    )
    assert invited.status_code == 201, invited.text
    assert invited.json()["user"]["name"] == stored
    mine = await client.patch(f"{API}/me", headers=team["eng"].headers, json={"name": given})
    assert mine.status_code == 200 and mine.json()["name"] == stored
    renamed = await client.patch(
        f"{API}/users/{team['eng'].id}", headers=team.owner.headers, json={"name": given}
    )
    assert renamed.status_code == 200 and renamed.json()["name"] == stored


async def test_a_name_of_invisible_characters_only_is_422(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team()
    response = await client.patch(
        f"{API}/me", headers=team.owner.headers, json={"name": "\u202e\u200b\r\n"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "name"]
