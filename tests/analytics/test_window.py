"""The report window: parsing, local days and the zone's UTC offsets (pure Python)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from lifeline.analytics.window import OffsetSpan, resolve_window
from lifeline.errors import Unprocessable

NOW = datetime(2026, 6, 15, 12, 30, tzinfo=UTC)


def test_utc_has_one_offset_and_calendar_days() -> None:
    window = resolve_window(since="2026-02-27", until="2026-03-02", tz_name="UTC", now=NOW)
    assert window.offset_spans() == [OffsetSpan(window.since, 0)]
    assert window.days() == [date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1)]


def test_new_york_changes_offset_at_the_exact_second_of_each_transition() -> None:
    window = resolve_window(
        since="2026-01-01", until="2026-12-31", tz_name="America/New_York", now=NOW
    )
    assert window.offset_spans() == [
        OffsetSpan(datetime(2026, 1, 1, 5, tzinfo=UTC), -5 * 3600),
        OffsetSpan(datetime(2026, 3, 8, 7, tzinfo=UTC), -4 * 3600),  # 02:00 EST
        OffsetSpan(datetime(2026, 11, 1, 6, tzinfo=UTC), -5 * 3600),  # 02:00 EDT
    ]
    assert len(window.days()) == 364


def test_half_hour_transitions_are_found_too() -> None:
    """Lord Howe Island moves by 30 minutes, at 02:00 local."""
    window = resolve_window(
        since="2026-03-01", until="2026-05-01", tz_name="Australia/Lord_Howe", now=NOW
    )
    spans = window.offset_spans()
    assert [span.offset_seconds for span in spans] == [11 * 3600, int(10.5 * 3600)]
    assert spans[1].starts_at == datetime(2026, 4, 4, 15, tzinfo=UTC)


def test_naive_times_are_local_and_offsets_are_honoured() -> None:
    window = resolve_window(
        since="2026-03-07T12:00",
        until="2026-03-09T12:00:00 02:00",  # "+02:00" unencoded in a query string
        tz_name="America/New_York",
        now=NOW,
    )
    assert window.since == datetime(2026, 3, 7, 17, tzinfo=UTC)
    assert window.until == datetime(2026, 3, 9, 10, tzinfo=UTC)


@pytest.mark.parametrize(
    ("since", "until", "field"),
    [
        ("2026-03-02", "2026-03-01", "since"),
        ("0001-01-01", None, "since"),
        (None, "0001-01-02", "until"),
        ("2026-03-02", "9999-12-31T23:59:59-23:00", "until"),
    ],
)
def test_impossible_windows_name_the_parameter(
    since: str | None, until: str | None, field: str
) -> None:
    with pytest.raises(Unprocessable) as caught:
        resolve_window(since=since, until=until, tz_name="UTC", now=NOW)
    assert caught.value.detail.startswith(f"{field}:")
