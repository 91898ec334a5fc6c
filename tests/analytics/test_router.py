"""GET /api/v1/analytics/escalations over crafted histories, on SQLite and PostgreSQL alike.

Every expected figure below is worked out by hand from the history the test writes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from lifeline.context import AppContext
from tests.analytics.history import History, at
from tests.support.factories import Factory, Team, escalate, new_session

URL = "/api/v1/analytics/escalations"
MARCH = {"since": "2026-03-02", "until": "2026-03-05"}


@pytest.fixture
def history(ctx: AppContext) -> History:
    return History(ctx.sessionmaker)


async def report(
    client: httpx.AsyncClient, team: Team, who: str = "vic", **params: str
) -> dict[str, Any]:
    person = team.owner if who == "owner" else team[who]
    response = await client.get(URL, headers=person.headers, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def march_history(history: History, factory: Factory) -> dict[str, Any]:
    """Three UTC days, 2026-03-02 to 03-04, plus rows just outside them and another account.

    claims in the window, seconds to claim: E9 45, E1 60, E2 120.25, E3 300, E4 3600, E6 7200.
    """
    team = await factory.team(junior="engineer", senior="engineer", lead="admin", vic="viewer")
    junior, senior, lead, owner = team["junior"], team["senior"], team["lead"], team.owner
    h = history
    rows = {
        "E1": await h.handoff(
            team, junior, at("03-02 09:00:00"), claimed=(senior, 60), resolved_after=3600
        ),
        "E2": await h.handoff(team, owner, at("03-02 12:00:00"), claimed=(lead, 120.25)),
        "E9": await h.handoff(
            team, junior, at("03-02 15:00:00"), claimed=(senior, 45), resolved_after=1800
        ),
        "E3": await h.handoff(
            team, junior, at("03-03 08:00:00"), claimed=(senior, 300), cancelled_after=3600
        ),
        # Claimed just after midnight: the claim belongs to 03-04, the escalation to 03-03.
        "E4": await h.handoff(
            team, junior, at("03-03 23:30:00"), claimed=(senior, 3600), resolved_after=10800
        ),
        "E5": await h.handoff(team, junior, at("03-04 10:00:00")),
        # Created before the window, claimed inside it: a claim, not an escalation.
        "E6": await h.handoff(team, junior, at("03-01 23:00:00"), claimed=(lead, 7200)),
        # Created inside, claimed after the window: an escalation, not a claim.
        "E7": await h.handoff(team, owner, at("03-04 20:00:00"), claimed=(senior, 4 * 3600 + 30)),
        "E8": await h.handoff(team, junior, at("02-20 10:00:00")),
        "E10": await h.handoff(team, junior, at("03-05 01:00:00")),
    }
    # E10's session was created inside the window but escalated only after it.
    await h.session(team, junior, at("03-04 23:00:00"))
    rows["P1"] = await h.handoff(
        team, junior, at("03-02 06:00:00"), intent="park", note="secret park note"
    )
    rows["P2"] = await h.handoff(
        team, senior, at("03-03 06:00:00"), intent="park", resolved_after=600
    )
    await h.session(team, junior, at("03-04 05:00:00"), title="never handed off")
    # Another account, busy in the same days: none of it may show.
    other = await factory.team(x="engineer", y="engineer")
    for hour in range(1, 5):
        await h.handoff(
            other, other["x"], at(f"03-03 0{hour}:00:00"), claimed=(other["y"], 10), note="other"
        )
    return {"team": team, "other": other, **rows}


POLICY_COLUMNS = ("expired", "claimed_at_step_1", "claimed_at_step_2", "claimed_at_step_3_or_later")


def _without_policy_columns(row: dict[str, object]) -> dict[str, object]:
    """The crafted history predates escalation policies: those columns are all 0 there."""
    assert all(row[c] == 0 for c in POLICY_COLUMNS)
    return {k: v for k, v in row.items() if k not in POLICY_COLUMNS}


async def test_totals_percentiles_and_people_for_a_crafted_history(
    client: httpx.AsyncClient, factory: Factory, history: History
) -> None:
    h = await march_history(history, factory)
    team: Team = h["team"]
    body = await report(client, team, **MARCH)

    assert body["window"] == {
        "since": "2026-03-02T00:00:00Z",
        "until": "2026-03-05T00:00:00Z",
        "tz": "UTC",
    }
    assert body["totals"] == {
        "escalations": 7,  # E1 E2 E9 E3 E4 E5 E7
        "parks": 2,
        "claimed": 6,  # E1 E2 E9 E3 E4 E6
        "resolved": 3,  # E1 E9 E4 (P2, a park, is not an escalation)
        "cancelled": 1,  # E3
        "expired": 0,
        "open": 1,  # E5 (E8 and E10 are open but not created in the window)
    }
    # Sorted: 45, 60, 120.25, 300, 3600, 7200 (n = 6).
    # p50: position 0.5 * 5 = 2.5 → 120.25 + 0.5 * (300 - 120.25) = 210.125
    # p90: position 0.9 * 5 = 4.5 → 3600 + 0.5 * (7200 - 3600) = 5400
    assert body["time_to_claim_seconds"] == {"p50": 210.125, "p90": 5400.0, "max": 7200.0}

    assert [_without_policy_columns(r) for r in body["by_day"]] == [
        {
            "date": "2026-03-02",
            "escalations": 3,  # E1 E2 E9
            "claimed": 4,  # E6 7200, E1 60, E2 120.25, E9 45 → 60 + 0.5 * 60.25
            "resolved": 2,  # E1 3600, E9 1800
            "p50_time_to_claim_seconds": 90.125,
            "p50_time_to_resolve_seconds": 2700.0,
        },
        {
            "date": "2026-03-03",
            "escalations": 2,  # E3 E4
            "claimed": 1,  # E3
            "resolved": 0,
            "p50_time_to_claim_seconds": 300.0,
            "p50_time_to_resolve_seconds": None,
        },
        {
            "date": "2026-03-04",
            "escalations": 2,  # E5 E7
            "claimed": 1,  # E4, at 00:30
            "resolved": 1,  # E4 after 3 hours
            "p50_time_to_claim_seconds": 3600.0,
            "p50_time_to_resolve_seconds": 10800.0,
        },
    ]
    senior, lead, junior, owner = team["senior"], team["lead"], team["junior"], team.owner
    assert body["by_claimer"] == [
        {"user": {"id": senior.id, "name": senior.name}, "claimed": 4},
        {"user": {"id": lead.id, "name": lead.name}, "claimed": 2},
    ]
    assert body["by_escalator"] == [
        {"user": {"id": junior.id, "name": junior.name}, "escalations": 5},
        {"user": {"id": owner.id, "name": owner.name}, "escalations": 2},
    ]
    # Created in the window: the 7 escalated sessions, 2 parked, E10's (escalated only after
    # the window) and one never handed off.
    assert body["sessions_created"] == 11
    assert body["sessions_escalated"] == 7
    assert body["escalation_rate"] == round(7 / 11, 4)


async def test_backlog_lists_open_escalations_now_oldest_first_with_ages(
    client: httpx.AsyncClient, factory: Factory, history: History
) -> None:
    h = await march_history(history, factory)
    before = datetime.now(UTC)
    body = await report(client, h["team"], **MARCH)
    after = datetime.now(UTC)

    assert [item["handoff_id"] for item in body["backlog"]] == [h["E8"].id, h["E5"].id, h["E10"].id]
    assert body["backlog_total"] == 3
    first = body["backlog"][0]
    junior = h["team"]["junior"]
    assert first["escalator"] == {"id": junior.id, "name": junior.name}
    assert first["session"] == {"id": h["E8"].session_id, "title": "Stuck"}
    assert first["status"] == "open"
    age = timedelta(seconds=first["age_seconds"])
    assert before - at("02-20 10:00:00") - timedelta(seconds=1) <= age
    assert age <= after - at("02-20 10:00:00")


async def test_days_follow_the_requested_time_zone(
    client: httpx.AsyncClient, factory: Factory, history: History
) -> None:
    """New York springs forward on 2026-03-08: that local day lasts 23 hours."""
    team = await factory.team(junior="engineer", vic="viewer")
    junior = team["junior"]
    for moment in [
        "03-07 04:59:59",  # 03-06 23:59:59 EST: before the New York window
        "03-07 05:00:00",  # 03-07 00:00 EST: exactly the start, included
        "03-08 04:30:00",  # 03-07 23:30 EST, already 03-08 in UTC
        "03-08 06:59:00",  # 03-08 01:59 EST
        "03-09 02:00:00",  # 03-08 22:00 EDT, already 03-09 in UTC
        "03-09 03:30:00",  # 03-08 23:30 EDT, already 03-09 in UTC
        "03-10 03:59:00",  # 03-09 23:59 EDT
        "03-10 04:00:00",  # 03-10 00:00 EDT: exactly the end, excluded
    ]:
        await history.handoff(team, junior, at(moment))

    new_york = await report(
        client, team, since="2026-03-07", until="2026-03-10", tz="America/New_York"
    )
    assert new_york["window"] == {
        "since": "2026-03-07T00:00:00-05:00",
        "until": "2026-03-10T00:00:00-04:00",
        "tz": "America/New_York",
    }
    assert [(d["date"], d["escalations"]) for d in new_york["by_day"]] == [
        ("2026-03-07", 2),
        ("2026-03-08", 3),
        ("2026-03-09", 1),
    ]
    assert new_york["totals"]["escalations"] == 6

    utc = await report(client, team, since="2026-03-07", until="2026-03-10")
    assert [(d["date"], d["escalations"]) for d in utc["by_day"]] == [
        ("2026-03-07", 2),  # 04:59:59 and 05:00
        ("2026-03-08", 2),  # 04:30 and 06:59
        ("2026-03-09", 2),  # 02:00 and 03:30
    ]
    assert utc["totals"]["escalations"] == 6
    shifted = await report(
        client, team, since="2026-03-07T12:00", until="2026-03-09T12:00", tz="America/New_York"
    )
    # 03-07 17:00 UTC to 03-09 16:00 UTC: 03-08 04:30, 06:59, 03-09 02:00, 03:30.
    assert [(d["date"], d["escalations"]) for d in shifted["by_day"]] == [
        ("2026-03-07", 1),
        ("2026-03-08", 3),
        ("2026-03-09", 0),
    ]
    assert shifted["window"]["since"] == "2026-03-07T12:00:00-05:00"


async def test_an_empty_window_is_zero_filled_with_null_figures(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(vic="viewer")
    body = await report(client, team, since="2025-01-01", until="2025-01-04")
    assert body["totals"] == dict.fromkeys(
        ["escalations", "parks", "claimed", "resolved", "cancelled", "expired", "open"], 0
    )
    assert body["time_to_claim_seconds"] == {"p50": None, "p90": None, "max": None}
    assert body["by_day"] == [
        {
            "date": f"2025-01-0{day}",
            "escalations": 0,
            "claimed": 0,
            "resolved": 0,
            "p50_time_to_claim_seconds": None,
            "p50_time_to_resolve_seconds": None,
            "expired": 0,
            "claimed_at_step_1": 0,
            "claimed_at_step_2": 0,
            "claimed_at_step_3_or_later": 0,
        }
        for day in (1, 2, 3)
    ]
    assert body["claimed_by_step"] == []
    assert body["by_claimer"] == [] and body["by_escalator"] == [] and body["backlog"] == []
    assert body["sessions_created"] == 0 and body["escalation_rate"] is None


async def test_percentiles_interpolate_exactly_like_percentile_cont(
    client: httpx.AsyncClient, factory: Factory, history: History
) -> None:
    """Durations with microseconds, in scrambled order; positions between ranks."""
    team = await factory.team(junior="engineer", senior="engineer", vic="viewer")
    waits = [0.000001, 912.5, 3.25, 59.999999, 17.125, 600.0, 86400.0]
    for i, wait in enumerate(waits):
        await history.handoff(
            team, team["junior"], at(f"03-02 0{i}:00:00.5"), claimed=(team["senior"], wait)
        )
    # Sorted: 0.000001, 3.25, 17.125, 59.999999, 600, 912.5, 86400 (n = 7, positions 0-6).
    # p50: position 3 exactly → 59.999999 → 60.0 to the millisecond.
    # p90: position 5.4 → 912.5 + 0.4 * (86400 - 912.5) = 35107.5
    body = await report(client, team, since="2026-03-02", until="2026-03-04")
    assert body["time_to_claim_seconds"] == {"p50": 60.0, "p90": 35107.5, "max": 86400.0}
    # The day-long wait was claimed on 03-03; 03-02 has the other six:
    # p50 position 2.5 → 17.125 + 0.5 * (59.999999 - 17.125) = 38.5624995 → 38.562
    assert [row["p50_time_to_claim_seconds"] for row in body["by_day"]] == [38.562, 86400.0]

    body = await report(client, team, since="2026-03-02", until="2026-03-03")
    # p90 of those six: position 4.5 → 600 + 0.5 * (912.5 - 600)
    assert body["time_to_claim_seconds"] == {"p50": 38.562, "p90": 756.25, "max": 912.5}


async def test_waits_of_several_days_keep_their_microseconds(
    client: httpx.AsyncClient, factory: Factory, history: History
) -> None:
    """Durations past a day are where a sloppy day/second split would drift."""
    team = await factory.team(junior="engineer", senior="engineer", vic="viewer")
    for i, wait in enumerate([90061.000001, 172800.5, 259200.123457]):
        await history.handoff(
            team, team["junior"], at(f"02-20 0{i}:00:00"), claimed=(team["senior"], wait)
        )
    body = await report(client, team, since="2026-02-20", until="2026-02-25")
    # p90: position 1.8 → 172800.5 + 0.8 * (259200.123457 - 172800.5) = 241920.1987656
    assert body["time_to_claim_seconds"] == {"p50": 172800.5, "p90": 241920.199, "max": 259200.123}
    claims_by_day = {d["date"]: d["p50_time_to_claim_seconds"] for d in body["by_day"]}
    assert claims_by_day == {
        "2026-02-20": None,
        "2026-02-21": 90061.0,
        "2026-02-22": 172800.5,
        "2026-02-23": 259200.123,
        "2026-02-24": None,
    }


async def test_csv_export_of_the_daily_rows(
    client: httpx.AsyncClient, factory: Factory, history: History
) -> None:
    h = await march_history(history, factory)
    response = await client.get(
        URL, headers=h["team"]["vic"].headers, params={**MARCH, "format": "csv"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    disposition = response.headers["content-disposition"]
    assert disposition == 'attachment; filename="escalations-2026-03-02-2026-03-04.csv"'
    assert response.text.splitlines() == [
        "date,escalations,claimed,resolved,p50_time_to_claim_seconds,p50_time_to_resolve_seconds,"
        "expired,claimed_at_step_1,claimed_at_step_2,claimed_at_step_3_or_later",
        "2026-03-02,3,4,2,90.125,2700.0,0,0,0,0",
        "2026-03-03,2,1,0,300.0,,0,0,0,0",
        "2026-03-04,2,1,1,3600.0,10800.0,0,0,0,0",
    ]


async def test_accounts_see_only_their_own_figures(
    client: httpx.AsyncClient, factory: Factory, history: History
) -> None:
    h = await march_history(history, factory)
    other: Team = h["other"]
    body = await report(client, other, who="x", **MARCH)
    assert body["totals"]["escalations"] == 4 and body["totals"]["claimed"] == 4
    assert body["time_to_claim_seconds"] == {"p50": 10.0, "p90": 10.0, "max": 10.0}
    assert [row["user"]["id"] for row in body["by_claimer"]] == [other["y"].id]
    assert body["backlog"] == [] and body["sessions_created"] == 4
    team_ids = {p.id for p in h["team"].members.values()} | {h["team"].owner.id}
    assert not any(user_id in json.dumps(body) for user_id in team_ids)


async def test_parks_are_only_a_number(
    client: httpx.AsyncClient, factory: Factory, history: History
) -> None:
    team = await factory.team(quiet="engineer", vic="viewer")
    quiet = team["quiet"]
    park = await history.handoff(
        team, quiet, at("03-02 10:00:00"), intent="park", note="do not tell anyone"
    )
    resumed = await history.handoff(
        team, quiet, at("03-02 11:00:00"), intent="park", resolved_after=60
    )
    for who in ("vic", "quiet", "owner"):
        body = await report(client, team, who=who, since="2026-03-02", until="2026-03-03")
        assert body["totals"]["parks"] == 2
        assert body["totals"]["resolved"] == 0 and body["totals"]["open"] == 0
        assert body["by_escalator"] == [] and body["by_claimer"] == [] and body["backlog"] == []
        assert body["by_day"][0]["escalations"] == 0
        text = json.dumps(body)
        for secret in (park.id, park.session_id, resumed.id, quiet.id, "do not tell anyone"):
            assert secret not in text


async def test_every_member_may_read_it_and_strangers_may_not(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(eng="engineer", adm="admin", vic="viewer")
    for person in (team.owner, team["eng"], team["adm"], team["vic"]):
        response = await client.get(URL, headers=person.headers)
        assert response.status_code == 200, response.text
    assert (await client.get(URL)).status_code == 401


async def test_the_default_window_is_the_last_30_days(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team(vic="viewer")
    before = datetime.now(UTC)
    body = await report(client, team)
    since = datetime.fromisoformat(body["window"]["since"])
    until = datetime.fromisoformat(body["window"]["until"])
    assert before <= until <= datetime.now(UTC)
    assert until - since == timedelta(days=30)
    days = [row["date"] for row in body["by_day"]]
    assert days[0] == since.date().isoformat() and days[-1] == until.date().isoformat()
    assert len(days) == (until.date() - since.date()).days + 1
    only_until = await report(client, team, until="2026-03-31")
    assert only_until["window"]["since"] == "2026-03-01T00:00:00Z"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-03-05", "until": "2026-03-05"}, "since"),
        ({"since": "2026-03-06", "until": "2026-03-05"}, "since"),
        ({"since": "2025-01-01", "until": "2026-01-03"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-01"}, "until"),
        ({"tz": "Mars/Olympus_Mons"}, "tz"),
        ({"tz": "../../etc/passwd"}, "tz"),
        ({"bucket": "week"}, "bucket"),
        ({"format": "xml"}, "format"),
        # Near datetime's limits the day arithmetic overflowed: a 500 before.
        ({"since": "9999-12-30", "until": "9999-12-31T23:59:59"}, "until"),
        ({"since": "0001-01-01", "until": "0001-01-02"}, "until"),
        ({"until": "9999-12-31"}, "until"),
    ],
)
async def test_bad_windows_zones_and_buckets_are_422_naming_the_parameter(
    client: httpx.AsyncClient, factory: Factory, params: dict[str, str], field: str
) -> None:
    team = await factory.team()
    response = await client.get(URL, headers=team.owner.headers, params=params)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    if isinstance(detail, str):
        assert detail.startswith(f"{field}:"), detail
    else:
        assert [e["loc"][-1] for e in detail] == [field]


async def test_a_window_of_exactly_366_days_is_allowed(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    team = await factory.team()
    body = await report(client, team, who="owner", since="2024-01-01", until="2025-01-01")
    assert len(body["by_day"]) == 366


async def test_figures_follow_the_hand_off_workflow_through_the_api(
    client: httpx.AsyncClient, factory: Factory
) -> None:
    """Rows written by the real services (microsecond timestamps, releases) add up too."""
    team = await factory.team(junior="engineer", senior="engineer", vic="viewer")
    junior, senior = team["junior"], team["senior"]
    session = await new_session(client, junior)
    handoff = await escalate(client, junior, session["id"])
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"

    async def act(verb: str) -> None:
        response = await client.post(f"{base}/{verb}", headers=senior.headers)
        assert response.status_code == 200, response.text

    await act("claim")
    body = await report(client, team)
    assert body["totals"]["escalations"] == 1 and body["totals"]["claimed"] == 1
    assert body["by_claimer"] == [{"user": {"id": senior.id, "name": senior.name}, "claimed": 1}]
    waited = body["time_to_claim_seconds"]
    assert waited["p50"] is not None and waited["p50"] == waited["p90"] == waited["max"] >= 0

    # A release takes the claim back: nothing claimed, the escalation is waiting again.
    await act("release")
    body = await report(client, team)
    assert body["totals"]["claimed"] == 0 and body["totals"]["open"] == 1
    assert [item["handoff_id"] for item in body["backlog"]] == [handoff["id"]]

    await act("claim")
    await act("resolve")
    body = await report(client, team)
    assert body["totals"] | {"parks": None} == {
        "escalations": 1,
        "parks": None,
        "claimed": 1,
        "resolved": 1,
        "cancelled": 0,
        "expired": 0,
        "open": 0,
    }
    # The default policy's first step went out with the escalation: picked up at step 1.
    assert body["claimed_by_step"] == [{"step": 1, "claimed": 1}]
    today = body["by_day"][-1]
    assert today["date"] == datetime.now(UTC).date().isoformat()
    assert today["resolved"] == 1 and today["p50_time_to_resolve_seconds"] is not None
    assert body["backlog"] == [] and body["escalation_rate"] == 1.0
