"""Escalation analytics: how fast the team picks things up. Read-only, one account at a time.

Which timestamp puts a handoff in the window ``[since, until)`` (``until`` exclusive):

- ``escalations`` / ``parks``: escalations / parks whose ``created_at`` is in the window.
- ``claimed``: escalations whose ``claimed_at`` is in the window, whatever happened after
  (resolved, cancelled or still claimed). A release clears the claim, so a released escalation
  counts again only when it is picked up again, at that new ``claimed_at``.
- ``resolved``: escalations whose ``resolved_at`` is in the window.
- ``cancelled``: escalations whose ``cancelled_at`` is in the window.
- ``open``: escalations created in the window that are still open (nobody has them) now.
- time to claim = ``claimed_at - created_at`` over the ``claimed`` escalations; time to resolve
  = ``resolved_at - created_at`` over the ``resolved`` ones. Seconds, to the millisecond;
  percentiles are ``percentile_cont`` (linear interpolation), ``null`` where there are none.
- ``by_day``: the same definitions per local day of the window's time zone, every day the
  window touches, zero-filled.
- ``by_claimer`` / ``by_escalator``: the ``claimed`` / ``escalations`` rows per person.
- ``sessions_created``: AI sessions created in the window; ``sessions_escalated``: those of them
  escalated before ``until``; ``escalation_rate`` the share (``null`` when none were created).
- ``backlog``: escalations open right now, oldest first, whatever the window.

Parks are only ever counted: no park appears in any list, day row or per-person figure.
All figures are aggregated in the database; Python only sees grouped rows.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date, datetime
from typing import Any

from sqlalchemy import Double, Select, and_, cast, func, null, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from lifeline.accounts.models import User
from lifeline.accounts.schemas import UserRef
from lifeline.ai_sessions.models import AISession
from lifeline.analytics import schemas
from lifeline.analytics.sql import (
    Moment,
    grouped_percentiles,
    label_literal,
    local_day,
    seconds_between,
)
from lifeline.analytics.window import Window, resolve_window
from lifeline.db import utcnow
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent
from lifeline.handoffs.schemas import SessionRef

BACKLOG_LIMIT = 50
CREATED, CLAIMED, RESOLVED, CANCELLED = "created", "claimed", "resolved", "cancelled"


def _in_window(moment: Moment, window: Window) -> ColumnElement[bool]:
    return and_(moment >= window.since, moment < window.until)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _events(dialect: str, account_id: str, window: Window) -> Select[Any]:
    """One row per thing that happened in the window: (kind, intent, status, day, dur)."""
    spans = window.offset_spans()

    def happened(
        kind: str, moment: Any, duration: ColumnElement[Any], *where: ColumnElement[bool]
    ) -> Select[Any]:
        return select(
            label_literal(kind).label("kind"),
            Handoff.intent.label("intent"),
            Handoff.status.label("status"),
            local_day(dialect, moment, spans).label("day"),
            duration.label("dur"),
        ).where(Handoff.account_id == account_id, _in_window(moment, window), *where)

    no_duration = cast(null(), Double)
    escalation = Handoff.intent == Intent.ESCALATE
    return union_all(
        happened(CREATED, Handoff.created_at, no_duration),
        happened(
            CLAIMED,
            Handoff.claimed_at,
            seconds_between(dialect, Handoff.claimed_at, Handoff.created_at),
            escalation,
        ),
        happened(
            RESOLVED,
            Handoff.resolved_at,
            seconds_between(dialect, Handoff.resolved_at, Handoff.created_at),
            escalation,
        ),
        happened(CANCELLED, Handoff.cancelled_at, no_duration, escalation),
    )  # type: ignore[return-value]


async def _daily(
    db: AsyncSession, dialect: str, account_id: str, window: Window
) -> tuple[schemas.Totals, list[schemas.DayRow]]:
    events = _events(dialect, account_id, window).subquery("events")
    query = grouped_percentiles(
        dialect,
        events,
        keys=["kind", "intent", "day"],
        value="dur",
        percentiles={"p50": 0.5},
        extra=lambda c: [
            func.count().label("n"),
            func.count().filter(c.status == HandoffStatus.OPEN).label("still_open"),
        ],
    )
    counts: dict[tuple[str, date], int] = defaultdict(int)
    medians: dict[tuple[str, date], float | None] = {}
    totals: dict[str, int] = defaultdict(int)
    still_open = 0
    for kind, intent, day, p50, n, open_now in (await db.execute(query)).all():
        if intent == Intent.PARK:
            if kind == CREATED:
                totals["parks"] += n
            continue
        key = (kind, _day(day))
        counts[key] += n
        medians[key] = _seconds(p50)
        totals[kind] += n
        if kind == CREATED:
            still_open += open_now
    rows = [
        schemas.DayRow(
            date=day,
            escalations=counts[(CREATED, day)],
            claimed=counts[(CLAIMED, day)],
            resolved=counts[(RESOLVED, day)],
            p50_time_to_claim_seconds=medians.get((CLAIMED, day)),
            p50_time_to_resolve_seconds=medians.get((RESOLVED, day)),
        )
        for day in window.days()
    ]
    summary = schemas.Totals(
        escalations=totals[CREATED],
        parks=totals["parks"],
        claimed=totals[CLAIMED],
        resolved=totals[RESOLVED],
        cancelled=totals[CANCELLED],
        open=still_open,
    )
    return summary, rows


async def _time_to_claim(
    db: AsyncSession, dialect: str, account_id: str, window: Window
) -> schemas.DurationStats:
    claims = (
        select(seconds_between(dialect, Handoff.claimed_at, Handoff.created_at).label("dur"))
        .where(
            Handoff.account_id == account_id,
            Handoff.intent == Intent.ESCALATE,
            _in_window(Handoff.claimed_at, window),
        )
        .subquery("claims")
    )
    query = grouped_percentiles(
        dialect,
        claims,
        keys=[],
        value="dur",
        percentiles={"p50": 0.5, "p90": 0.9},
        extra=lambda c: [func.max(c.dur).label("longest")],
    )
    p50, p90, longest = (await db.execute(query)).one()
    return schemas.DurationStats(p50=_seconds(p50), p90=_seconds(p90), max=_seconds(longest))


async def _people(
    db: AsyncSession, account_id: str, window: Window
) -> tuple[list[schemas.ClaimerCount], list[schemas.EscalatorCount]]:
    escalations = (Handoff.account_id == account_id) & (Handoff.intent == Intent.ESCALATE)
    acts = union_all(
        select(label_literal(CLAIMED).label("act"), Handoff.claimed_by.label("who")).where(
            escalations, _in_window(Handoff.claimed_at, window)
        ),
        select(label_literal(CREATED).label("act"), Handoff.created_by.label("who")).where(
            escalations, _in_window(Handoff.created_at, window)
        ),
    ).subquery("acts")
    n = func.count().label("n")
    query = (
        select(acts.c.act, User.id, User.name, n)
        .join(User, User.id == acts.c.who)
        .where(User.account_id == account_id)
        .group_by(acts.c.act, User.id, User.name)
        .order_by(acts.c.act, n.desc(), User.name, User.id)
    )
    claimers: list[schemas.ClaimerCount] = []
    escalators: list[schemas.EscalatorCount] = []
    for act, user_id, name, count in (await db.execute(query)).all():
        ref = UserRef(id=user_id, name=name)
        if act == CLAIMED:
            claimers.append(schemas.ClaimerCount(user=ref, claimed=count))
        else:
            escalators.append(schemas.EscalatorCount(user=ref, escalations=count))
    return claimers, escalators


async def _backlog(
    db: AsyncSession, account_id: str, now: datetime
) -> tuple[list[schemas.BacklogItem], int]:
    query = (
        select(
            Handoff.id,
            Handoff.created_at,
            Handoff.status,
            AISession.id,
            AISession.title,
            User.id,
            User.name,
            func.count().over().label("total"),
        )
        .join(AISession, AISession.id == Handoff.session_id)
        .join(User, User.id == Handoff.created_by)
        .where(
            Handoff.account_id == account_id,
            Handoff.status == HandoffStatus.OPEN,
            Handoff.intent == Intent.ESCALATE,
        )
        .order_by(Handoff.created_at, Handoff.id)
        .limit(BACKLOG_LIMIT)
    )
    rows = (await db.execute(query)).all()
    items: list[schemas.BacklogItem] = []
    for hid, created_at, status, sid, title, uid, name, _total in rows:
        items.append(
            schemas.BacklogItem(
                handoff_id=hid,
                session=SessionRef(id=sid, title=title),
                escalator=UserRef(id=uid, name=name),
                created_at=created_at,
                age_seconds=max(0, int((now - created_at).total_seconds())),
                status=status,
            )
        )
    return items, (rows[0].total if rows else 0)


async def _sessions(db: AsyncSession, account_id: str, window: Window) -> tuple[int, int]:
    escalated = (
        select(Handoff.id)
        .where(
            Handoff.session_id == AISession.id,
            Handoff.account_id == account_id,
            Handoff.intent == Intent.ESCALATE,
            Handoff.created_at < window.until,
        )
        .exists()
    )
    query = select(func.count(), func.count().filter(escalated)).where(
        AISession.account_id == account_id, _in_window(AISession.created_at, window)
    )
    created, with_escalation = (await db.execute(query)).one()
    return created, with_escalation


async def escalation_report(
    *,
    db: AsyncSession,
    user: User,
    since: str | None,
    until: str | None,
    tz: str,
    now: datetime | None = None,
) -> schemas.EscalationReport:
    """The escalation figures of the caller's account for a window (see the module docstring)."""
    now = now or utcnow()
    window = resolve_window(since=since, until=until, tz_name=tz, now=now)
    dialect = db.get_bind().dialect.name
    account_id = user.account_id
    totals, by_day = await _daily(db, dialect, account_id, window)
    time_to_claim = await _time_to_claim(db, dialect, account_id, window)
    by_claimer, by_escalator = await _people(db, account_id, window)
    backlog, backlog_total = await _backlog(db, account_id, now)
    sessions_created, sessions_escalated = await _sessions(db, account_id, window)
    rate = round(sessions_escalated / sessions_created, 4) if sessions_created else None
    return schemas.EscalationReport(
        window=schemas.WindowRead(
            since=window.local(window.since), until=window.local(window.until), tz=tz
        ),
        totals=totals,
        time_to_claim_seconds=time_to_claim,
        backlog=backlog,
        backlog_total=backlog_total,
        by_day=by_day,
        by_claimer=by_claimer,
        by_escalator=by_escalator,
        sessions_created=sessions_created,
        sessions_escalated=sessions_escalated,
        escalation_rate=rate,
    )


def daily_csv(report: schemas.EscalationReport) -> str:
    """The report's daily rows as CSV with a header line; empty cells where a figure is null."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(schemas.CSV_COLUMNS)
    for row in report.by_day:
        values = row.model_dump(mode="json")
        writer.writerow(["" if values[c] is None else values[c] for c in schemas.CSV_COLUMNS])
    return out.getvalue()
