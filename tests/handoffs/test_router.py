"""The hand-off workflow over the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from lifeline.context import AppContext
from lifeline.realtime.models import Event
from tests.support.factories import Factory, Person, escalate, new_session

API = "/api/v1"


def handoff_url(session_id: str, handoff_id: str, action: str) -> str:
    return f"{API}/ai-sessions/{session_id}/handoffs/{handoff_id}/{action}"


async def act(
    client: httpx.AsyncClient, person: Person, session_id: str, handoff_id: str, action: str
) -> httpx.Response:
    return await client.post(handoff_url(session_id, handoff_id, action), headers=person.headers)


async def history(client: httpx.AsyncClient, person: Person, session_id: str) -> list[str]:
    response = await client.get(f"{API}/ai-sessions/{session_id}/handoffs", headers=person.headers)
    assert response.status_code == 200, response.text
    return [h["id"] for h in response.json()["items"]]


async def queue(client: httpx.AsyncClient, person: Person, status: str = "open") -> list[str]:
    response = await client.get(
        f"{API}/ai-sessions/queue", params={"status": status}, headers=person.headers
    )
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def session_of(client: httpx.AsyncClient, person: Person, session_id: str) -> dict[str, Any]:
    response = await client.get(f"{API}/ai-sessions/{session_id}", headers=person.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_escalate_then_pick_up_assigns_the_claimer(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"], note="deadlock on CI")
    assert handoff["status"] == "open" and handoff["intent"] == "escalate"
    assert set(handoff) == {
        "id",
        "session_id",
        "intent",
        "status",
        "note",
        "brief",
        "answer",
        "created_by",
        "created_at",
        "claimed_by",
        "claimed_at",
        "resolved_by",
        "resolved_at",
    }
    assert (await session_of(client, team["junior"], session["id"]))["status"] == "escalated"

    queued = await client.get(f"{API}/ai-sessions/queue", headers=team["senior"].headers)
    queue_body = queued.json()
    assert [item["id"] for item in queue_body["items"]] == [handoff["id"]]
    item = queue_body["items"][0]
    assert item["session"] == {"id": session["id"], "title": session["title"]}
    assert item["escalator"] == {"id": team["junior"].id, "name": team["junior"].name}
    assert item["note"] == "deadlock on CI" and item["age_seconds"] >= 0

    claim = await act(client, team["senior"], session["id"], handoff["id"], "claim")
    assert claim.status_code == 200, claim.text
    body = claim.json()
    assert body["status"] == "claimed"
    assert body["claimed_by"] == team["senior"].id and body["claimed_at"] is not None

    read = await session_of(client, team["senior"], session["id"])
    assert read["assigned_to"] == team["senior"].id
    assert read["status"] == "claimed"
    assert await queue(client, team["senior"]) == []
    assert await queue(client, team["senior"], "claimed") == [handoff["id"]]


async def test_claim_viewer_role_gets_403_engineer_or_admin_required(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", vic="viewer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])

    response = await act(client, team["vic"], session["id"], handoff["id"], "claim")

    assert response.status_code == 403
    assert response.json() == {"detail": "Engineer or admin access required"}
    # The viewer still sees it (read-only) and it is still open for everyone else.
    assert await queue(client, team["vic"]) == [handoff["id"]]
    after = await session_of(client, team["vic"], session["id"])
    assert after["status"] == "escalated" and after["assigned_to"] is None


async def test_claim_engineer_admin_owner_succeed_and_populate_claimed_at_and_claimed_by(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", eng="engineer", adm="admin")
    for claimer in (team["eng"], team["adm"], team.owner):
        session = await new_session(client, team["junior"])
        handoff = await escalate(client, team["junior"], session["id"])
        before = datetime.fromisoformat(handoff["created_at"])

        response = await act(client, claimer, session["id"], handoff["id"], "claim")

        assert response.status_code == 200, response.text
        body = response.json()
        assert body["claimed_by"] == claimer.id
        claimed_at = datetime.fromisoformat(body["claimed_at"])
        assert claimed_at.utcoffset() is not None and claimed_at >= before
        assert (await session_of(client, claimer, session["id"]))["assigned_to"] == claimer.id


async def test_second_claimer_gets_409_naming_the_holder(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", first="engineer", second="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    assert (await act(client, team["first"], session["id"], handoff["id"], "claim")).is_success

    lost = await act(client, team["second"], session["id"], handoff["id"], "claim")

    assert lost.status_code == 409
    body = lost.json()
    assert body["claimed_by"] == {"id": team["first"].id, "name": team["first"].name}
    assert team["first"].name in body["detail"]
    # The winner claiming again is also a conflict: nothing changes hands.
    again = await act(client, team["first"], session["id"], handoff["id"], "claim")
    assert again.status_code == 409
    assert (await session_of(client, team["junior"], session["id"]))["assigned_to"] == team[
        "first"
    ].id


async def test_escalator_cannot_claim_their_own(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(senior="admin")
    session = await new_session(client, team["senior"])
    handoff = await escalate(client, team["senior"], session["id"])

    response = await act(client, team["senior"], session["id"], handoff["id"], "claim")

    assert response.status_code == 403
    assert response.json() == {"detail": "You can't pick up your own escalation"}
    assert await queue(client, team.owner) == [handoff["id"]]


async def test_a_park_cannot_be_claimed(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    park = await escalate(client, team["junior"], session["id"], intent="park")
    # The owner (an admin) can't see another's park at all: it answers as unknown.
    response = await act(client, team.owner, session["id"], park["id"], "claim")
    assert response.status_code == 404


async def test_second_escalation_of_a_session_is_409(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    first = await escalate(client, team["junior"], session["id"])

    again = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["junior"].headers,
        json={"intent": "escalate", "note": "anyone?"},
    )
    assert again.status_code == 409
    assert again.json()["detail"] == "An escalation is already open or claimed for this session"

    # Still 409 once it is claimed; a fresh escalation is allowed once it is resolved.
    assert (await act(client, team["senior"], session["id"], first["id"], "claim")).is_success
    claimed_again = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["senior"].headers,
        json={"intent": "escalate"},
    )
    assert claimed_again.status_code == 409
    assert (await act(client, team["senior"], session["id"], first["id"], "resolve")).is_success
    second = await escalate(client, team["junior"], session["id"], note="it is back")
    assert await history(client, team["junior"], session["id"]) == [second["id"], first["id"]]


async def test_park_is_private_to_its_creator(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer", senior="engineer", adm="admin", vic="viewer")
    session = await new_session(client, team["junior"])
    park = await escalate(client, team["junior"], session["id"], intent="park", note="lunch")
    assert park["intent"] == "park" and park["status"] == "open"
    assert (await session_of(client, team["junior"], session["id"]))["status"] == "parked"

    assert await history(client, team["junior"], session["id"]) == [park["id"]]
    # Admins and the owner may read the session, but never someone else's park.
    for other in (team.owner, team["adm"]):
        assert await history(client, other, session["id"]) == []
    for anyone in (team["junior"], team["senior"], team["adm"], team["vic"], team.owner):
        assert park["id"] not in await queue(client, anyone)
        assert park["id"] not in await queue(client, anyone, "claimed")

    # Once escalated, everyone reads the history, still without the park.
    escalation = await escalate(client, team["junior"], session["id"])
    for other in (team["senior"], team["vic"], team.owner):
        assert await history(client, other, session["id"]) == [escalation["id"]]
    mine = await client.get(
        f"{API}/ai-sessions/{session['id']}/handoffs", headers=team["junior"].headers
    )
    statuses = {h["id"]: h["status"] for h in mine.json()["items"]}
    # The escalation supersedes the park.
    assert statuses == {escalation["id"]: "open", park["id"]: "resolved"}


async def test_park_then_resume(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    park = await escalate(client, team["junior"], session["id"], intent="park")

    resumed = await act(client, team["junior"], session["id"], park["id"], "resolve")

    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "resolved"
    assert resumed.json()["resolved_by"] == team["junior"].id
    assert (await session_of(client, team["junior"], session["id"]))["status"] == "active"
    twice = await act(client, team["junior"], session["id"], park["id"], "resolve")
    assert twice.status_code == 409


async def test_cannot_park_while_an_escalation_is_live(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    escalation = await escalate(client, team["junior"], session["id"])

    for person in (team["junior"], team["senior"]):
        if person is team["senior"]:
            claimed = await act(client, person, session["id"], escalation["id"], "claim")
            assert claimed.is_success
        response = await client.post(
            f"{API}/ai-sessions/{session['id']}/handoff",
            headers=person.headers,
            json={"intent": "park"},
        )
        assert response.status_code == 409, response.text
    # The session stays in the team's hands, not parked.
    read = await session_of(client, team["junior"], session["id"])
    assert read["status"] == "claimed" and read["assigned_to"] == team["senior"].id


async def test_release_puts_it_back_in_the_queue(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", other="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    assert (await act(client, team["senior"], session["id"], handoff["id"], "claim")).is_success

    # Only the claimer releases.
    for person, code in ((team["other"], 403), (team["junior"], 403)):
        response = await act(client, person, session["id"], handoff["id"], "release")
        assert response.status_code == code
    denied = await act(client, team["other"], session["id"], handoff["id"], "release")
    assert denied.json() == {"detail": "Only the engineer who picked it up can release it"}

    released = await act(client, team["senior"], session["id"], handoff["id"], "release")

    assert released.status_code == 200, released.text
    body = released.json()
    assert body["status"] == "open" and body["claimed_by"] is None and body["claimed_at"] is None
    assert await queue(client, team["other"]) == [handoff["id"]]
    read = await session_of(client, team["junior"], session["id"])
    assert read["status"] == "escalated" and read["assigned_to"] is None
    # Released work is claimable again, by anyone but the escalator.
    assert (await act(client, team["other"], session["id"], handoff["id"], "claim")).is_success
    # Releasing something not claimed is a conflict.
    stale = await act(client, team["senior"], session["id"], handoff["id"], "release")
    assert stale.status_code == 403


async def test_release_of_an_open_escalation_is_409(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    response = await act(client, team["senior"], session["id"], handoff["id"], "release")
    assert response.status_code in (403, 409)
    assert await queue(client, team["senior"]) == [handoff["id"]]


async def test_resolve_by_the_claimer_only(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer", senior="engineer", adm="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])

    not_yet = await act(client, team["senior"], session["id"], handoff["id"], "resolve")
    assert not_yet.status_code == 403
    assert not_yet.json() == {"detail": "Only the engineer who picked it up can resolve it"}

    assert (await act(client, team["senior"], session["id"], handoff["id"], "claim")).is_success
    for person in (team["junior"], team["adm"], team.owner):
        denied = await act(client, person, session["id"], handoff["id"], "resolve")
        assert denied.status_code == 403

    done = await act(client, team["senior"], session["id"], handoff["id"], "resolve")

    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "resolved" and body["resolved_by"] == team["senior"].id
    assert body["resolved_at"] is not None and body["claimed_by"] == team["senior"].id
    assert (await session_of(client, team["junior"], session["id"]))["status"] == "resolved"
    assert await queue(client, team["adm"], "claimed") == []
    for action in ("resolve", "release", "claim", "cancel"):
        person = team["junior"] if action == "cancel" else team["senior"]
        after = await act(client, person, session["id"], handoff["id"], action)
        assert after.status_code in (403, 409), (action, after.text)
        assert after.status_code != 200


async def test_cancel_by_the_escalator_only(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])

    for person in (team["senior"], team.owner):
        denied = await act(client, person, session["id"], handoff["id"], "cancel")
        assert denied.status_code == 403
        assert denied.json() == {"detail": "Only the engineer who escalated it can cancel it"}

    cancelled = await act(client, team["junior"], session["id"], handoff["id"], "cancel")

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await queue(client, team["senior"]) == []
    assert (await session_of(client, team["junior"], session["id"]))["status"] == "active"
    twice = await act(client, team["junior"], session["id"], handoff["id"], "cancel")
    assert twice.status_code == 409
    assert twice.json()["detail"] == "This handoff is cancelled"
    claim = await act(client, team["senior"], session["id"], handoff["id"], "claim")
    assert claim.status_code == 409
    assert claim.json() == {"detail": "This escalation is cancelled", "claimed_by": None}


async def test_cancel_after_pick_up_unassigns(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    assert (await act(client, team["senior"], session["id"], handoff["id"], "claim")).is_success

    cancelled = await act(client, team["junior"], session["id"], handoff["id"], "cancel")

    assert cancelled.status_code == 200
    read = await session_of(client, team["junior"], session["id"])
    assert read["status"] == "active" and read["assigned_to"] is None
    assert await queue(client, team["senior"], "claimed") == []


async def test_only_creator_or_assignee_hands_off(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer", adm="admin", vic="viewer")
    session = await new_session(client, team["junior"])

    # A manager can read the session but not hand it off for its creator.
    by_admin = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["adm"].headers,
        json={"intent": "escalate"},
    )
    assert by_admin.status_code == 403
    # Another engineer can't even see it before it is escalated.
    by_peer = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["senior"].headers,
        json={"intent": "escalate"},
    )
    assert by_peer.status_code == 404
    # A viewer's own session: viewers never hand off.
    viewer_session = await new_session(client, team["vic"])
    by_viewer = await client.post(
        f"{API}/ai-sessions/{viewer_session['id']}/handoff",
        headers=team["vic"].headers,
        json={"intent": "escalate"},
    )
    assert by_viewer.status_code == 403
    assert by_viewer.json() == {"detail": "Engineer or admin access required"}
    assert await queue(client, team.owner) == []


async def test_history_is_newest_first_and_paginated(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    made = []
    for n in range(5):
        handoff = await escalate(client, team["junior"], session["id"], note=f"round {n}")
        made.append(handoff["id"])
        cancelled = await act(client, team["junior"], session["id"], handoff["id"], "cancel")
        assert cancelled.is_success

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get(
            f"{API}/ai-sessions/{session['id']}/handoffs",
            params=params,
            headers=team["senior"].headers,
        )
        assert response.status_code == 200
        body = response.json()
        assert len(body["items"]) <= 2
        seen += [h["id"] for h in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))


async def test_unknown_handoff_and_mismatched_session_are_404(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(junior="engineer", senior="engineer")
    session = await new_session(client, team["junior"])
    other = await new_session(client, team["junior"], title="another")
    handoff = await escalate(client, team["junior"], session["id"])

    unknown = await act(
        client, team["senior"], session["id"], "00000000-0000-0000-0000-000000000000", "claim"
    )
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "Handoff not found"}
    # A real handoff under the wrong session is unknown too.
    wrong = await act(client, team["senior"], other["id"], handoff["id"], "claim")
    assert wrong.status_code == 404
    assert await queue(client, team["senior"]) == [handoff["id"]]


async def test_a_session_is_parked_once(client: httpx.AsyncClient, factory: Factory) -> None:
    team = await factory.team(junior="engineer")
    session = await new_session(client, team["junior"])
    park = await escalate(client, team["junior"], session["id"], intent="park")

    again = await client.post(
        f"{API}/ai-sessions/{session['id']}/handoff",
        headers=team["junior"].headers,
        json={"intent": "park"},
    )

    assert again.status_code == 409
    assert again.json() == {"detail": "You have already parked this session"}
    assert await history(client, team["junior"], session["id"]) == [park["id"]]
    # Cancelling the park resumes the session; it can be parked again afterwards.
    assert (await act(client, team["junior"], session["id"], park["id"], "cancel")).is_success
    assert (await session_of(client, team["junior"], session["id"]))["status"] == "active"
    await escalate(client, team["junior"], session["id"], intent="park")


async def test_the_owner_can_release_what_anyone_holds(
    client: httpx.AsyncClient,
    ctx: AppContext,
    factory: Factory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The escape hatch: work held by someone who can't or won't let go goes back to the team,
    logged and announced as a release. An admin can't; nothing held is a conflict."""
    team = await factory.team(junior="engineer", senior="engineer", adm="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    not_held = await act(client, team.owner, session["id"], handoff["id"], "release")
    assert not_held.status_code == 409, not_held.text
    assert (await act(client, team["senior"], session["id"], handoff["id"], "claim")).is_success
    denied = await act(client, team["adm"], session["id"], handoff["id"], "release")
    assert denied.status_code == 403

    with caplog.at_level(logging.INFO, logger="lifeline.handoffs.service"):
        released = await act(client, team.owner, session["id"], handoff["id"], "release")

    assert released.status_code == 200, released.text
    assert released.json()["status"] == "open" and released.json()["claimed_by"] is None
    assert await queue(client, team["senior"]) == [handoff["id"]]
    read = await session_of(client, team["junior"], session["id"])
    assert read["status"] == "escalated" and read["assigned_to"] is None
    (record,) = [r for r in caplog.records if "released escalation" in r.getMessage()]
    assert team.owner.id in record.getMessage() and team["senior"].id in record.getMessage()
    async with ctx.sessionmaker() as db:
        types = (
            await db.scalars(
                select(Event.type).where(Event.account_id == team.account.id).order_by(Event.id)
            )
        ).all()
    assert types[-1] == "handoff.released"
