"""The few SQL expressions SQLite and PostgreSQL spell differently, each written once per dialect.

Both spellings give bit-for-bit the same answers, so a report reads the same on either database:

- durations: on SQLite the stored text (``YYYY-MM-DD HH:MM:SS.ffffff``, see ``db.UTCDateTime``)
  becomes exact integer microseconds, then the same double arithmetic PostgreSQL's
  ``date_part('epoch', interval)`` does (``julianday()`` differences would be off by up to
  ~50µs, enough to make the two disagree).
- percentiles are PostgreSQL's ``percentile_cont``; SQLite computes the identical value from
  ``row_number()``/``count()`` windows, with the same ``lo + frac * (hi - lo)`` interpolation.
- local days come from UTC offsets worked out in Python (see ``window.OffsetSpan``), never from
  the database's own time-zone data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    Date,
    Double,
    Integer,
    Select,
    String,
    Subquery,
    case,
    cast,
    func,
    literal_column,
    select,
    text,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.expression import ColumnClause

from lifeline.analytics.window import OffsetSpan

POSTGRESQL = "postgresql"
MICROS_PER_DAY = 86_400_000_000
REPORT_WORK_MEM = "32MB"

Columns = Any  # a Subquery's ``.c`` collection
Moment = ColumnElement[Any] | QueryableAttribute[Any]  # a timestamp column or expression
ExtraAggregates = Callable[[Columns], Sequence[ColumnElement[Any]]]


def _sqlite_epoch_micros(moment: Moment) -> ColumnElement[int]:
    whole = cast(func.strftime("%s", moment), Integer) * 1_000_000
    # Characters 21-26 are the microseconds; padding keeps a value stored without them at 0.
    fraction = cast(func.substr(type_coerce(moment, String) + "000000", 21, 6), Integer)
    return whole + fraction


async def tune_for_report(db: AsyncSession, dialect: str) -> None:
    """Give this transaction's sorts and hashes room to stay in memory (PostgreSQL).

    A busy month is ~100k index entries to sort by day and hash by session; the default 4MB
    spills them to disk and doubles the time. ``SET LOCAL`` ends with the transaction.
    """
    if dialect == POSTGRESQL:
        await db.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))


def seconds_between(dialect: str, later: Moment, earlier: Moment) -> ColumnElement[Any]:
    """``later - earlier`` in seconds, as a double, computed the way PostgreSQL computes it.

    PostgreSQL's ``date_part('epoch', interval)`` (a double, unlike the slower numeric
    ``EXTRACT``) splits the difference into whole days and the microseconds left over and
    returns ``micros / 1e6 + days * 86400``; SQLite does the very same arithmetic on the
    exact microsecond difference, so both produce the same double.
    """
    if dialect == POSTGRESQL:
        return func.date_part("epoch", later - earlier, type_=Double)
    micros = _sqlite_epoch_micros(later) - _sqlite_epoch_micros(earlier)
    day = literal_column(str(MICROS_PER_DAY), Integer)
    # Integer division and remainder truncate toward zero, as PostgreSQL's do.
    rest = cast(micros % day, Double) / literal_column("1000000.0", Double)
    return rest + (micros // day) * 86400


def local_day(dialect: str, moment: Moment, spans: Sequence[OffsetSpan]) -> ColumnElement[Any]:
    """The calendar day of ``moment`` in the window's zone (a DATE, or ISO text on SQLite)."""
    offset: ColumnElement[Any]
    if len(spans) == 1:
        offset = literal_column(str(spans[0].offset_seconds))
    else:
        offset = case(
            *[
                (moment < later.starts_at, literal_column(str(span.offset_seconds)))
                for span, later in pairwise(spans)
            ],
            else_=literal_column(str(spans[-1].offset_seconds)),
        )
    if dialect == POSTGRESQL:
        shifted = func.timezone("UTC", moment) + offset * literal_column("INTERVAL '1 second'")
        return cast(shifted, Date)
    return func.date(moment, cast(offset, String) + " seconds")


def grouped_percentiles(
    dialect: str,
    source: Subquery,
    *,
    keys: Sequence[str],
    value: str,
    percentiles: Mapping[str, float],
    extra: ExtraAggregates,
) -> Select[Any]:
    """Per group of ``keys``: ``percentile_cont(p)`` of ``value`` (NULLs ignored), plus ``extra``.

    Labels: each key, each name in ``percentiles``, then whatever ``extra`` labels.
    """
    if dialect == POSTGRESQL:
        key_cols = [source.c[k] for k in keys]
        cont = [
            func.percentile_cont(p).within_group(source.c[value]).label(name)
            for name, p in percentiles.items()
        ]
        return select(*key_cols, *cont, *extra(source.c)).group_by(*key_cols)

    by_keys = [source.c[k] for k in keys]
    ranked = select(
        source,
        func.row_number()
        .over(partition_by=[*by_keys, source.c[value].is_(None)], order_by=source.c[value])
        .label("_rank"),
        func.count(source.c[value]).over(partition_by=by_keys or None).label("_n"),
    ).subquery("ranked")
    rank, n, val = ranked.c["_rank"], ranked.c["_n"], ranked.c[value]
    cont = []
    for name, p in percentiles.items():
        # PostgreSQL: first = floor(p*(n-1)), second = ceil(p*(n-1)), frac = p*(n-1) - first.
        position = cast(n - 1, Double) * literal_column(repr(float(p)))
        first = cast(position, Integer)
        second = first + case((position > first, 1), else_=0)
        low = func.max(case((rank == first + 1, val)))
        high = func.max(case((rank == second + 1, val)))
        cont.append((low + func.max(position - first) * (high - low)).label(name))
    key_cols = [ranked.c[k] for k in keys]
    return select(*key_cols, *cont, *extra(ranked.c)).group_by(*key_cols)


def label_literal(text: str) -> ColumnClause[Any]:
    """A constant string column, inlined (not a parameter) so that UNION branches line up."""
    if "'" in text:
        raise ValueError("label_literal takes plain labels only")
    return literal_column(f"'{text}'", String)
