"""The report's time window: parsing ``since``/``until``/``tz``, its local days and UTC offsets.

Everything here is plain Python over a bounded window (at most 366 days), so the SQL never needs
a time-zone database: the day boundaries and the zone's UTC offsets inside the window are worked
out once here and handed to the query as a handful of constants. SQLite and PostgreSQL therefore
bucket every timestamp by the very same rules (Python's ``zoneinfo``), whatever tz data the
database server happens to carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lifeline.errors import Unprocessable

DEFAULT_SPAN = timedelta(days=30)
MAX_SPAN = timedelta(days=366)
# Moments outside these are refused: near datetime's own limits (year 1 or 9999) the window's
# day and offset arithmetic overflows.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)
# Offsets change at most a few times a year; probing every 6 hours cannot miss a change,
# and a binary search then pins it to the second (tz transitions fall on whole seconds).
_PROBE = timedelta(hours=6)


@dataclass(frozen=True)
class OffsetSpan:
    """From ``starts_at`` (UTC) until the next span, local time is UTC + ``offset_seconds``."""

    starts_at: datetime
    offset_seconds: int


@dataclass(frozen=True)
class Window:
    """The half-open interval ``[since, until)`` in UTC, and the zone its days are counted in."""

    since: datetime
    until: datetime
    tz_name: str
    tz: tzinfo

    def days(self) -> list[date]:
        """Every local day the window touches, first to last (at most 367)."""
        first = self.since.astimezone(self.tz).date()
        last = (self.until - timedelta(microseconds=1)).astimezone(self.tz).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def offset_spans(self) -> list[OffsetSpan]:
        """The zone's UTC offset over the window: one span, or one more per DST change."""
        spans = [OffsetSpan(self.since, _offset(self.tz, self.since))]
        probe = self.since
        while probe < self.until:
            nxt = min(probe + _PROBE, self.until)
            if _offset(self.tz, nxt) != spans[-1].offset_seconds:
                change = _first_change(self.tz, probe, nxt, spans[-1].offset_seconds)
                spans.append(OffsetSpan(change, _offset(self.tz, change)))
            probe = nxt
        return spans

    def local(self, moment: datetime) -> datetime:
        return moment.astimezone(self.tz)


def _offset(tz: tzinfo, moment: datetime) -> int:
    offset = moment.astimezone(tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


def _first_change(tz: tzinfo, low: datetime, high: datetime, before: int) -> datetime:
    """The first whole second in ``(low, high]`` whose offset is no longer ``before``."""
    lo, hi = int(low.timestamp()), int(high.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(tz, datetime.fromtimestamp(mid, UTC)) == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def parse_zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise Unprocessable(f"tz: unknown time zone {name!r} (use an IANA name)") from exc


def parse_moment(raw: str, field: str, tz: tzinfo) -> datetime:
    """An ISO date (midnight in ``tz``) or datetime; a naive datetime is read in ``tz``."""
    text = raw.strip()
    # An unencoded "+02:00" in a query string arrives as " 02:00".
    if "T" in text and " " in text:
        head, _, tail = text.rpartition(" ")
        text = f"{head}+{tail}"
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=tz)
        moment = parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise Unprocessable(
            f"{field}: not an ISO 8601 date or date-time (e.g. 2026-03-01 or 2026-03-01T09:00)"
        ) from exc
    if not EARLIEST <= moment <= LATEST:
        raise Unprocessable(f"{field}: must be between 1970-01-01 and 3000-01-01")
    return moment


def resolve_window(*, since: str | None, until: str | None, tz_name: str, now: datetime) -> Window:
    """Defaults: ``until`` is now, ``since`` 30 days before ``until``. ``until`` is exclusive."""
    tz = parse_zone(tz_name)
    end = parse_moment(until, "until", tz) if until else now.astimezone(UTC)
    try:
        start = parse_moment(since, "since", tz) if since else end - DEFAULT_SPAN
    except OverflowError as exc:
        raise Unprocessable("until: too far in the past") from exc
    if start >= end:
        raise Unprocessable("since: must be before until")
    if end - start > MAX_SPAN:
        raise Unprocessable("since: the window from since to until is longer than 366 days")
    return Window(since=start, until=end, tz_name=tz_name, tz=tz)
