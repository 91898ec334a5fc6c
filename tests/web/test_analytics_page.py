"""The analytics page: the report drawn as charts and tables, with its CSV one click away."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import httpx

from lifeline.context import AppContext
from tests.analytics.history import History
from tests.support.factories import Factory
from tests.web.conftest import BrowserFactory


async def test_the_page_draws_the_last_days_and_links_the_csv(
    browser: BrowserFactory, factory: Factory, ctx: AppContext
) -> None:
    team = await factory.team(junior="engineer", senior="admin", vic="viewer")
    history = History(ctx.sessionmaker)
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    noon = datetime.combine(yesterday, time(12), tzinfo=UTC)
    await history.handoff(team, team["junior"], noon, claimed=(team["senior"], 120))
    await history.handoff(team, team["junior"], noon, claimed=(team["senior"], 600))
    waiting = await history.session(team, team["junior"], noon, title="Still waiting")
    await history.handoff(team, team["junior"], noon + timedelta(hours=1), session=waiting)

    tab = await browser(team["vic"])  # every member may read the figures
    page = await tab.page("/analytics?days=7&tz=UTC")
    assert page.status_code == 200
    html = page.text
    assert html.count('<svg class="chart"') == 2
    day = yesterday.isoformat()
    assert f"<title>{day}: 3 escalations</title>" in html
    assert f"<title>{day}: 2 picked up</title>" in html
    assert f"<title>{day}: 6m median time to pick up</title>" in html  # median of 2m and 10m
    assert "Still waiting" in html  # the backlog
    by_claimer = html.split('id="by-claimer"', 1)[1].split("</section>", 1)[0]
    assert team["senior"].name in by_claimer and '<td class="num">2</td>' in by_claimer

    link = re.search(r'href="(/api/v1/analytics/escalations\?[^"]+)" download', html)
    assert link is not None
    csv = await tab.client.get(link.group(1).replace("&amp;", "&"))
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    rows = csv.text.strip().splitlines()
    assert rows[0].startswith("date,escalations,claimed")
    assert f"{day},3,2," in csv.text
    assert len(rows) == 1 + 7


async def test_a_bad_window_or_zone_is_a_422_page_naming_it(
    browser: BrowserFactory, factory: Factory
) -> None:
    team = await factory.team()
    tab = await browser(team.owner)
    zone = await tab.page("/analytics?tz=Mars/Olympus")
    assert zone.status_code == 422 and "tz" in zone.text
    for days in ("0", "400", "week"):
        response = await tab.page(f"/analytics?days={days}")
        assert response.status_code == 422 and "days" in response.text


async def test_an_account_sees_only_its_own_figures(
    browser: BrowserFactory, factory: Factory, client: httpx.AsyncClient, ctx: AppContext
) -> None:
    ours = await factory.team(junior="engineer")
    theirs = await factory.team(other="engineer")
    history = History(ctx.sessionmaker)
    now = datetime.now(UTC)
    session = await history.session(theirs, theirs["other"], now, title="Their secret work")
    await history.handoff(theirs, theirs["other"], now, session=session)
    html = (await (await browser(ours.owner)).page("/analytics?tz=UTC")).text
    assert "Their secret work" not in html and theirs["other"].name not in html
    assert "Nothing waiting." in html
