"""HTTP: the escalation report, as JSON or as a CSV of its daily rows. Every member may read it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from lifeline.analytics import schemas
from lifeline.analytics import service as analytics
from lifeline.deps import CurrentUser, SessionDep

router = APIRouter(prefix="/analytics", tags=["analytics"])

MomentParam = Annotated[
    str | None,
    Query(
        max_length=64,
        description="ISO date or date-time; a date means midnight and a naive time is read in tz",
    ),
]


@router.get(
    "/escalations",
    response_model=schemas.EscalationReport,
    responses={
        200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"},
        422: {"description": "bad window, bucket or time zone (the parameter is named)"},
    },
)
async def escalation_analytics(
    db: SessionDep,
    user: CurrentUser,
    since: MomentParam = None,
    until: MomentParam = None,
    bucket: Literal["day"] = "day",
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of the days")] = "UTC",
    format: Literal["json", "csv"] = "json",
) -> schemas.EscalationReport | Response:
    """Escalations, claims and resolutions in ``[since, until)``; defaults to the last 30 days."""
    report = await analytics.escalation_report(db=db, user=user, since=since, until=until, tz=tz)
    if format == "csv":
        first = report.by_day[0].date.isoformat()
        last = report.by_day[-1].date.isoformat()
        return Response(
            analytics.daily_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="escalations-{first}-{last}.csv"'
            },
        )
    return report
