"""Escalation analytics: how fast the team picks things up. Read-only, one account at a time.

Which timestamp puts a handoff in the window ``[since, until)`` (``until`` exclusive):

- ``escalations`` / ``parks``: escalations / parks whose ``created_at`` is in the window.
- ``claimed``: escalations whose ``claimed_at`` is in the window, whatever happened after
  (resolved, cancelled or still claimed). A release clears the claim, so a released escalation
  counts again only when it is picked up again, at that new ``claimed_at``.
- ``resolved``: escalations whose ``resolved_at`` is in the window.
- ``cancelled``: escalations whose ``cancelled_at`` is in the window.
- ``expired``: escalations whose ``expired_at`` is in the window (nobody picked them up before
  their policy's ``expire_after_minutes``): counted apart from ``cancelled``.
- ``claimed_by_step``: the ``claimed`` escalations by the last step of their policy that had
  gone out when they were picked up (0: before the first); per day in three columns.
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

from sqlalchemy import (
    Double,
    Integer,
    Select,
    and_,
    case,
    cast,
    func,
    literal_column,
    null,
    select,
    union_all,
)
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
    tune_for_report,
)
from lifeline.analytics.window import Window, resolve_window
from lifeline.db import utcnow
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent
from lifeline.handoffs.schemas import SessionRef

BACKLOG_LIMIT = 50
# Kinds of event, as small integers: they are sorted on, and integers sort fastest.
ESCALATED, PARKED, CLAIMED, RESOLVED, CANCELLED, EXPIRED = 1, 2, 3, 4, 5, 6
# Inline constants rather than parameters: the planner then knows the value in every plan.
ESCALATION = Handoff.intent == label_literal(Intent.ESCALATE)


def _in_window(moment: Moment, window: Window) -> ColumnElement[bool]:
    return and_(moment >= window.since, moment < window.until)


def _code(kind: int) -> ColumnElement[int]:
    return literal_column(str(kind), Integer)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def _day(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _happened(
    dialect: str,
    account_id: str,
    window: Window,
    kind: ColumnElement[int],
    moment: Any,
    value: ColumnElement[Any],
    *where: ColumnElement[bool],
) -> Select[Any]:
    """Rows (kind, day, value) of the handoffs whose ``moment`` falls in the window.

    Each reads one index of ``analytics.models`` and nothing else.
    """
    return select(
        kind.label("kind"),
        local_day(dialect, moment, window.offset_spans()).label("day"),
        value.label("value"),
    ).where(Handoff.account_id == account_id, _in_window(moment, window), *where)


def _daily_query(dialect: str, account_id: str, window: Window) -> Select[Any]:
    """(kind, day, p50, n, waiting) per kind of event and local day.

    Creations and cancellations are only counted (a hash aggregate); claims and resolutions
    also get their median duration, the one part that needs sorting.
    """
    still_waiting = case(
        (and_(ESCALATION, Handoff.status == label_literal(HandoffStatus.OPEN)), 1), else_=0
    )
    counted = union_all(
        _happened(
            dialect,
            account_id,
            window,
            case((ESCALATION, ESCALATED), else_=PARKED),
            Handoff.created_at,
            still_waiting,
        ),
        _happened(
            dialect,
            account_id,
            window,
            _code(CANCELLED),
            Handoff.cancelled_at,
            literal_column("0"),
            ESCALATION,
        ),
        _happened(
            dialect,
            account_id,
            window,
            _code(EXPIRED),
            Handoff.expired_at,
            literal_column("0"),
            ESCALATION,
        ),
    ).subquery("counted")
    timed = union_all(
        *[
            _happened(
                dialect,
                account_id,
                window,
                _code(kind),
                moment,
                seconds_between(dialect, moment, Handoff.created_at),
                ESCALATION,
            )
            for kind, moment in ((CLAIMED, Handoff.claimed_at), (RESOLVED, Handoff.resolved_at))
        ]
    ).subquery("timed")
    counts = select(
        counted.c.kind,
        counted.c.day,
        cast(null(), Double).label("p50"),
        func.count().label("n"),
        func.sum(counted.c.value).label("waiting"),
    ).group_by(counted.c.kind, counted.c.day)
    medians = grouped_percentiles(
        dialect,
        timed,
        keys=["kind", "day"],
        value="value",
        percentiles={"p50": 0.5},
        extra=lambda c: [func.count().label("n"), literal_column("0").label("waiting")],
    )
    return union_all(counts, medians)  # type: ignore[return-value]


async def _claims_by_step(
    db: AsyncSession, dialect: str, account_id: str, window: Window
) -> dict[tuple[date, int], int]:
    """(local day, step picked up at) → how many; escalations older than policies left out."""
    day = local_day(dialect, Handoff.claimed_at, window.offset_spans()).label("day")
    rows = await db.execute(
        select(day, Handoff.claimed_step, func.count())
        .where(
            Handoff.account_id == account_id,
            _in_window(Handoff.claimed_at, window),
            ESCALATION,
            Handoff.claimed_step.is_not(None),
        )
        .group_by(day, Handoff.claimed_step)
    )
    return {(_day(d), int(step)): n for d, step, n in rows.all()}


def _step_columns(by_step: dict[tuple[date, int], int], day: date) -> dict[str, int]:
    columns = {"claimed_at_step_1": 0, "claimed_at_step_2": 0, "claimed_at_step_3_or_later": 0}
    for (d, step), n in by_step.items():
        if d != day:
            continue
        if step <= 1:
            columns["claimed_at_step_1"] += n
        elif step == 2:
            columns["claimed_at_step_2"] += n
        else:
            columns["claimed_at_step_3_or_later"] += n
    return columns


async def _daily(
    db: AsyncSession, dialect: str, account_id: str, window: Window
) -> tuple[schemas.Totals, list[schemas.DayRow], list[schemas.StepCount]]:
    by_step = await _claims_by_step(db, dialect, account_id, window)
    step_totals: dict[int, int] = defaultdict(int)
    for (_d, step), n in by_step.items():
        step_totals[step] += n
    query = _daily_query(dialect, account_id, window)
    counts: dict[tuple[int, date], int] = defaultdict(int)
    medians: dict[tuple[int, date], float | None] = {}
    totals: dict[int, int] = defaultdict(int)
    still_open = 0
    for kind, day, p50, n, waiting in (await db.execute(query)).all():
        key = (kind, _day(day))
        counts[key] = n
        medians[key] = _seconds(p50)
        totals[kind] += n
        still_open += waiting or 0
    rows = [
        schemas.DayRow(
            date=day,
            escalations=counts[(ESCALATED, day)],
            claimed=counts[(CLAIMED, day)],
            resolved=counts[(RESOLVED, day)],
            p50_time_to_claim_seconds=medians.get((CLAIMED, day)),
            p50_time_to_resolve_seconds=medians.get((RESOLVED, day)),
            expired=counts[(EXPIRED, day)],
            **_step_columns(by_step, day),
        )
        for day in window.days()
    ]
    summary = schemas.Totals(
        escalations=totals[ESCALATED],
        parks=totals[PARKED],
        claimed=totals[CLAIMED],
        resolved=totals[RESOLVED],
        cancelled=totals[CANCELLED],
        expired=totals[EXPIRED],
        open=still_open,
    )
    steps = [schemas.StepCount(step=k, claimed=v) for k, v in sorted(step_totals.items())]
    return summary, rows, steps


async def _time_to_claim(
    db: AsyncSession, dialect: str, account_id: str, window: Window
) -> schemas.DurationStats:
    claims = (
        select(seconds_between(dialect, Handoff.claimed_at, Handoff.created_at).label("dur"))
        .where(
            Handoff.account_id == account_id,
            ESCALATION,
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
    def tally(act: int, who: Any, moment: Any) -> Select[Any]:
        # Counted on the index first; only the handful of people are then looked up.
        return (
            select(_code(act).label("act"), who.label("who"), func.count().label("n"))
            .where(Handoff.account_id == account_id, ESCALATION, _in_window(moment, window))
            .group_by(who)
        )

    tallies = union_all(
        tally(CLAIMED, Handoff.claimed_by, Handoff.claimed_at),
        tally(ESCALATED, Handoff.created_by, Handoff.created_at),
    ).subquery("tallies")
    query = (
        select(tallies.c.act, User.id, User.name, tallies.c.n)
        .join(User, User.id == tallies.c.who)
        .where(User.account_id == account_id)
        .order_by(tallies.c.act, tallies.c.n.desc(), User.name, User.id)
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
            Handoff.status == label_literal(HandoffStatus.OPEN),
            ESCALATION,
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
    # An escalation never predates its session, so a session created in the window was
    # escalated before ``until`` exactly when one of its escalations was created in the window.
    # Uncorrelated, so both databases build the set once instead of probing per session.
    escalated = select(Handoff.session_id).where(
        Handoff.account_id == account_id, ESCALATION, _in_window(Handoff.created_at, window)
    )
    query = select(func.count(), func.count().filter(AISession.id.in_(escalated))).where(
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
    await tune_for_report(db, dialect)
    totals, by_day, claimed_by_step = await _daily(db, dialect, account_id, window)
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
        claimed_by_step=claimed_by_step,
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
