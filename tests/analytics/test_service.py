"""The escalation report at the service level, on SQLite and PostgreSQL: a crafted history whose
every figure is worked out by hand (steps picked up at, expiries, the backlog's ages at a given
``now``), an empty account, the window's guards and the CSV of the daily rows."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import update

from lifeline.accounts.models import User
from lifeline.analytics import schemas
from lifeline.analytics import service as analytics
from lifeline.context import AppContext
from lifeline.errors import Unprocessable
from lifeline.handoffs.models import Handoff
from tests.analytics.history import History, at
from tests.support.factories import Factory, Person, Team

WINDOW = {"since": "2026-03-02", "until": "2026-03-05", "tz": "UTC"}
NOW = at("03-10 08:00:00")


@pytest.fixture
def history(ctx: AppContext) -> History:
    return History(ctx.sessionmaker)


@pytest.fixture
async def team(factory: Factory) -> Team:
    return await factory.team(junior="engineer", senior="engineer")


async def _report(ctx: AppContext, person: Person, **window: str) -> schemas.EscalationReport:
    params = {**WINDOW, **window}
    async with ctx.sessionmaker() as db:
        user = await db.get(User, person.id)
        assert user is not None
        return await analytics.escalation_report(
            db=db,
            user=user,
            since=params["since"],
            until=params["until"],
            tz=params["tz"],
            now=NOW,
        )


async def _set(ctx: AppContext, handoff: Handoff, **values: object) -> None:
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(update(Handoff).where(Handoff.id == handoff.id).values(**values))


async def _crafted(ctx: AppContext, history: History, factory: Factory, team: Team) -> Handoff:
    """Five escalations and a park in the window, one escalation of another account; → the
    escalation still open."""
    junior, senior = team["junior"], team["senior"]
    first = await history.handoff(team, junior, at("03-02 09:00:00"), claimed=(senior, 60))
    await _set(ctx, first, claimed_step=1)
    second = await history.handoff(team, junior, at("03-02 10:00:00"), claimed=(senior, 600))
    await _set(ctx, second, claimed_step=2)
    third = await history.handoff(
        team, junior, at("03-03 09:00:00"), claimed=(senior, 1200), resolved_after=1800
    )
    await _set(ctx, third, claimed_step=4)
    fourth = await history.handoff(team, junior, at("03-03 12:00:00"))
    await _set(ctx, fourth, status="expired", expired_at=at("03-03 12:30:00"))
    still_open = await history.handoff(team, junior, at("03-04 08:00:00"))
    await history.handoff(team, junior, at("03-02 11:00:00"), intent="park")
    other = await factory.team(junior="engineer", senior="engineer")
    await history.handoff(
        other, other["junior"], at("03-02 09:30:00"), claimed=(other["senior"], 5)
    )
    return still_open


async def test_every_figure_of_a_crafted_history(
    ctx: AppContext, history: History, factory: Factory, team: Team
) -> None:
    still_open = await _crafted(ctx, history, factory, team)
    report = await _report(ctx, team["senior"])

    assert report.totals == schemas.Totals(
        escalations=5, parks=1, claimed=3, resolved=1, cancelled=0, expired=1, open=1
    )
    # Claims at 60, 600 and 1200 s: p90 interpolates 80% of the way from 600 to 1200.
    assert report.time_to_claim_seconds == schemas.DurationStats(p50=600.0, p90=1080.0, max=1200.0)
    assert [(s.step, s.claimed) for s in report.claimed_by_step] == [(1, 1), (2, 1), (4, 1)]
    days = {row.date: row for row in report.by_day}
    assert list(days) == [date(2026, 3, 2), date(2026, 3, 3), date(2026, 3, 4)]
    monday, tuesday, wednesday = days.values()
    assert (monday.escalations, monday.claimed, monday.resolved) == (2, 2, 0)
    assert (monday.claimed_at_step_1, monday.claimed_at_step_2) == (1, 1)
    assert monday.p50_time_to_claim_seconds == 330.0
    assert monday.p50_time_to_resolve_seconds is None
    assert (tuesday.escalations, tuesday.claimed, tuesday.resolved, tuesday.expired) == (2, 1, 1, 1)
    assert tuesday.claimed_at_step_3_or_later == 1
    assert (tuesday.p50_time_to_claim_seconds, tuesday.p50_time_to_resolve_seconds) == (
        1200.0,
        1800.0,
    )
    assert (wednesday.escalations, wednesday.claimed, wednesday.expired) == (1, 0, 0)

    assert [(c.user.id, c.claimed) for c in report.by_claimer] == [(team["senior"].id, 3)]
    assert [(e.user.id, e.escalations) for e in report.by_escalator] == [(team["junior"].id, 5)]
    # The backlog is as of ``now``, whatever the window.
    assert report.backlog_total == 1
    assert [(b.handoff_id, b.age_seconds) for b in report.backlog] == [
        (still_open.id, int((NOW - at("03-04 08:00:00")).total_seconds()))
    ]
    # Six sessions were started in the window (one each), five of them escalated.
    assert (report.sessions_created, report.sessions_escalated) == (6, 5)
    assert report.escalation_rate == round(5 / 6, 4)


async def test_a_window_of_nothing_has_zeros_and_nulls_and_the_csv_empty_cells(
    ctx: AppContext, team: Team
) -> None:
    report = await _report(ctx, team.owner, since="2026-03-02", until="2026-03-04")
    assert report.totals == schemas.Totals(
        escalations=0, parks=0, claimed=0, resolved=0, cancelled=0, expired=0, open=0
    )
    assert report.time_to_claim_seconds == schemas.DurationStats(p50=None, p90=None, max=None)
    assert report.escalation_rate is None and report.sessions_created == 0
    assert (report.backlog, report.backlog_total, report.claimed_by_step) == ([], 0, [])
    assert analytics.daily_csv(report).split("\r\n") == [
        ",".join(schemas.CSV_COLUMNS),
        "2026-03-02,0,0,0,,,0,0,0,0",
        "2026-03-03,0,0,0,,,0,0,0,0",
        "",
    ]


async def test_the_csv_carries_each_days_figures(
    ctx: AppContext, history: History, factory: Factory, team: Team
) -> None:
    await _crafted(ctx, history, factory, team)
    lines = analytics.daily_csv(await _report(ctx, team.owner)).split("\r\n")
    assert lines[1:4] == [
        "2026-03-02,2,2,0,330.0,,0,1,1,0",
        "2026-03-03,2,1,1,1200.0,1800.0,1,0,0,1",
        "2026-03-04,1,0,0,,,0,0,0,0",
    ]


async def test_another_accounts_members_see_only_their_own(
    ctx: AppContext, history: History, factory: Factory, team: Team
) -> None:
    await _crafted(ctx, history, factory, team)
    stranger = await factory.team()
    report = await _report(ctx, stranger.owner)
    assert report.totals.escalations == 0 and report.backlog_total == 0
    assert report.by_claimer == [] and report.by_escalator == []


async def test_a_backwards_window_is_refused(ctx: AppContext, team: Team) -> None:
    with pytest.raises(Unprocessable) as caught:
        await _report(ctx, team.owner, since="2026-03-05", until="2026-03-02")
    assert caught.value.detail == "since: must be before until"


async def test_without_a_window_the_last_30_days_up_to_now(ctx: AppContext, team: Team) -> None:
    async with ctx.sessionmaker() as db:
        user = await db.get(User, team.owner.id)
        assert user is not None
        report = await analytics.escalation_report(
            db=db, user=user, since=None, until=None, tz="UTC", now=NOW
        )
    assert report.window.until == NOW
    assert report.window.since == NOW - timedelta(days=30)
    assert len(report.by_day) == 31
