"""GET /api/v1/handoffs/{hid}/deliveries, and the dispatch wired to POST …/handoff."""

from __future__ import annotations

import httpx

from lifeline.context import AppContext
from tests.notifications.conftest import settle
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder


async def test_endpoint_dispatches_on_escalate(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"], title="Flaky deadlock")
    response = await client.post(
        f"/api/v1/ai-sessions/{session['id']}/handoff",
        headers=team["junior"].headers,
        json={"intent": "escalate", "note": "pair with me?"},
    )
    assert response.status_code == 201, response.text
    handoff = response.json()
    await ctx.tasks.drain()

    assert smtp.recipients() == sorted([team.owner.email, team["senior"].email])
    assert all("Flaky deadlock" in m.message["Subject"] for m in smtp.messages)
    view = await client.get(
        f"/api/v1/handoffs/{handoff['id']}/deliveries", headers=team["junior"].headers
    )
    assert view.status_code == 200, view.text
    body = view.json()
    assert body["next_cursor"] is None
    emails = sorted(
        (i["recipient"]["email"], i["status"], i["attempts"])
        for i in body["items"]
        if i["channel"] == "email"
    )
    assert emails == sorted([(team.owner.email, "sent", 1), (team["senior"].email, "sent", 1)])
    item = next(i for i in body["items"] if i["recipient"]["id"] == team["senior"].id)
    assert set(item) == {
        "id",
        "handoff_id",
        "recipient",
        "endpoint_id",
        "channel",
        "kind",
        "status",
        "attempts",
        "last_error",
        "next_attempt_at",
        "sent_at",
        "created_at",
    }
    assert item["recipient"] == {
        "id": team["senior"].id,
        "name": team["senior"].name,
        "email": team["senior"].email,
    }
    assert item["handoff_id"] == handoff["id"] and item["kind"] == "escalated"


async def test_deliveries_are_for_admins_owners_and_the_escalator(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin", peer="engineer", vic="viewer")
    stranger = (await factory.team(boss="admin"))["boss"]
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    await settle(ctx, handoff["id"])
    url = f"/api/v1/handoffs/{handoff['id']}/deliveries"

    for person in (team.owner, team["senior"], team["junior"]):
        allowed = await client.get(url, headers=person.headers)
        assert allowed.status_code == 200 and len(allowed.json()["items"]) == 6
    for person in (team["peer"], team["vic"]):
        refused = await client.get(url, headers=person.headers)
        assert refused.status_code == 403
        assert refused.json() == {"detail": "Admin, owner or the escalator access required"}
    foreign = await client.get(url, headers=stranger.headers)
    assert foreign.status_code == 404
    unknown = await client.get(
        "/api/v1/handoffs/00000000-0000-0000-0000-000000000000/deliveries",
        headers=team.owner.headers,
    )
    assert unknown.status_code == 404
    anonymous = await client.get(url)
    assert anonymous.status_code == 401


async def test_a_park_is_private_to_its_creator_here_too(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])
    park = await escalate(client, team["junior"], session["id"], intent="park")
    url = f"/api/v1/handoffs/{park['id']}/deliveries"

    mine = await client.get(url, headers=team["junior"].headers)
    assert mine.json() == {"items": [], "next_cursor": None}
    for person in (team.owner, team["senior"]):
        assert (await client.get(url, headers=person.headers)).status_code == 404


async def test_deliveries_page_with_a_cursor(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", a="admin", b="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    await settle(ctx, handoff["id"])
    url = f"/api/v1/handoffs/{handoff['id']}/deliveries"

    seen: list[str] = []
    cursor: str | None = None
    for _page in range(10):
        params: dict[str, str | int] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(url, headers=team.owner.headers, params=params)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6
    bad = await client.get(url, headers=team.owner.headers, params={"cursor": "nonsense"})
    assert bad.status_code == 422 and "cursor" in bad.json()["detail"]
