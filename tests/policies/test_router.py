"""GET/PUT /api/v1/escalation-policy: the shape, who may edit, each refusal naming its field."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.factories import Factory

URL = "/api/v1/escalation-policy"
EVERYONE = {"roles": ["engineer", "admin", "owner"], "users": []}


def step(after: int, **notify: Any) -> dict[str, Any]:
    return {
        "after_minutes": after,
        "notify": {"roles": [], "users": [], **notify} if notify else EVERYONE,
        "channels": ["push", "email"],
    }


async def test_every_member_reads_the_default_policy(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(vic="viewer", eng="engineer")
    for person in (team["vic"], team["eng"], team.owner):
        response = await client.get(URL, headers=person.headers)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "steps": [step(0), step(10)],
            "repeat": 0,
            "expire_after_minutes": None,
            "claim_reminder_minutes": 240,
            "auto_release_minutes": None,
        }


async def test_admins_and_owners_replace_it_others_get_403(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(adm="admin", eng="engineer", vic="viewer", lead="admin")
    policy = {
        "steps": [step(0, roles=["admin"]), step(5, users=[team["eng"].id]), step(15)],
        "repeat": 2,
        "expire_after_minutes": 120,
    }
    for person in (team["eng"], team["vic"]):
        refused = await client.put(URL, headers=person.headers, json=policy)
        assert refused.status_code == 403, refused.text
    saved = await client.put(URL, headers=team["adm"].headers, json=policy)
    assert saved.status_code == 200, saved.text
    body = saved.json()
    assert body["repeat"] == 2 and body["expire_after_minutes"] == 120
    # Omitted optional fields take their defaults.
    assert body["claim_reminder_minutes"] == 240 and body["auto_release_minutes"] is None
    read = await client.get(URL, headers=team["vic"].headers)
    assert read.json() == body
    # The reminder shortcut reads (and edits) the second step.
    account = await client.get("/api/v1/account", headers=team.owner.headers)
    assert account.json()["reminder_minutes"] == 5
    moved = await client.patch(
        "/api/v1/account", headers=team.owner.headers, json={"reminder_minutes": 7}
    )
    assert moved.status_code == 200 and moved.json()["reminder_minutes"] == 7
    after = (await client.get(URL, headers=team.owner.headers)).json()
    assert [s["after_minutes"] for s in after["steps"]] == [0, 7, 15]
    too_late = await client.patch(
        "/api/v1/account", headers=team.owner.headers, json={"reminder_minutes": 30}
    )
    assert too_late.status_code == 422 and "reminder_minutes" in too_late.text


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"steps": []}, "steps"),
        ({"steps": [step(-1)]}, "after_minutes"),
        ({"steps": [step(0), step(10), step(5)]}, "steps"),
        ({"steps": [step(0, roles=["boss"])]}, "roles"),
        ({"steps": [step(0, roles=["viewer"])]}, "roles"),
        ({"steps": [step(0, roles=[])]}, "steps"),
        ({"repeat": 10}, "repeat"),
        ({"repeat": -1}, "repeat"),
        ({"steps": [step(0)], "repeat": 1}, "repeat"),
        ({"steps": [{**step(0), "channels": ["sms"]}]}, "channels"),
        ({"steps": [{**step(0), "channels": []}]}, "channels"),
        ({"expire_after_minutes": 0}, "expire_after_minutes"),
        ({"claim_reminder_minutes": -5}, "claim_reminder_minutes"),
        ({"auto_release_minutes": "soon"}, "auto_release_minutes"),
        ({"surprise": 1}, "surprise"),
        ({"steps": [step(0, users=["not-an-id\u0000"])]}, "users"),
    ],
)
async def test_invalid_policies_are_422_naming_the_field(
    client: httpx.AsyncClient, factory: Factory, change: dict[str, Any], field: str
) -> None:
    team = await factory.team()
    before = (await client.get(URL, headers=team.owner.headers)).json()
    policy = {"steps": [step(0), step(10)], **change}
    response = await client.put(URL, headers=team.owner.headers, json=policy)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert (await client.get(URL, headers=team.owner.headers)).json() == before


async def test_named_users_must_be_active_non_viewer_members_of_the_account(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(vic="viewer", eng="engineer")
    other = await factory.team(stranger="engineer")
    for user_id, why in (
        (other["stranger"].id, "not a member"),
        (team["vic"].id, "viewer"),
        ("00000000-0000-4000-8000-000000000000", "not a member"),
    ):
        policy = {"steps": [step(0), step(5, users=[team["eng"].id, user_id])]}
        response = await client.put(URL, headers=team.owner.headers, json=policy)
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "steps.1.notify.users.1" in detail and why in detail
