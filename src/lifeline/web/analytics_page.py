"""The analytics page: how fast the team picks escalations up, drawn as SVG charts."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from lifeline.analytics import service as analytics
from lifeline.analytics.window import parse_zone
from lifeline.db import utcnow
from lifeline.deps import SessionDep
from lifeline.web import charts
from lifeline.web.auth import WebPrincipal
from lifeline.web.router import page_context
from lifeline.web.routing import PageRoute
from lifeline.web.templating import render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

RANGES = (7, 30, 90)


@router.get("/analytics")
async def analytics_page(
    request: Request,
    db: SessionDep,
    principal: WebPrincipal,
    days: Annotated[int, Query(ge=1, le=366)] = 30,
    tz: Annotated[str, Query(max_length=64)] = "UTC",
) -> Response:
    zone = parse_zone(tz)
    # ``days`` local days, today included: from midnight ``days - 1`` days ago until now.
    first_day = (utcnow().astimezone(zone) - timedelta(days=days - 1)).date()
    since = first_day.isoformat()
    report = await analytics.escalation_report(
        db=db, user=principal.user, since=since, until=None, tz=tz
    )
    day_list = [row.date for row in report.by_day]
    per_day = charts.bar_chart(
        label="Escalations and pick-ups per day",
        days=day_list,
        series=[
            charts.Series("escalations", "escalations", [r.escalations for r in report.by_day]),
            charts.Series("picked up", "claimed", [r.claimed for r in report.by_day]),
        ],
    )
    time_to_claim = charts.line_chart(
        label="Median time to pick up, per day",
        days=day_list,
        series=charts.Series(
            "median time to pick up",
            "ttc",
            [r.p50_time_to_claim_seconds for r in report.by_day],
        ),
    )
    csv_url = "/api/v1/analytics/escalations?" + urlencode(
        {"since": since, "tz": tz, "format": "csv"}
    )
    return render(
        request,
        "analytics.html",
        page_context(
            principal,
            report=report,
            days=days,
            ranges=RANGES,
            tz=tz,
            per_day_chart=per_day,
            time_to_claim_chart=time_to_claim,
            csv_url=csv_url,
            duration=charts.format_duration,
        ),
    )
