"""The webhook retry schedule: now, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, with jitter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lifeline.integrations.delivery import (
    MAX_ATTEMPTS,
    RETRY_SCHEDULE,
    parse_retry_after,
    retry_delay,
)


def test_the_schedule_and_its_jitter() -> None:
    assert MAX_ATTEMPTS == 8
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    assert [int(step.total_seconds()) for step in RETRY_SCHEDULE] == expected
    for attempts, seconds in enumerate(expected, start=1):
        delays = {retry_delay(attempts).total_seconds() for _ in range(20)}
        assert all(0.9 * seconds <= d <= 1.1 * seconds for d in delays)
        assert len(delays) > 1  # jittered


def test_retry_after_wins_within_bounds() -> None:
    assert retry_delay(1, timedelta(minutes=7)) == timedelta(minutes=7)
    assert retry_delay(1, timedelta(0)) == timedelta(seconds=1)
    assert retry_delay(1, timedelta(days=9)) == timedelta(hours=24)


def test_retry_after_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
    assert parse_retry_after("120", now) == timedelta(seconds=120)
    assert parse_retry_after("Wed, 02 Dec 2026 06:10:00 GMT", now) == timedelta(minutes=10)
    assert parse_retry_after("Wed, 02 Dec 2026 05:00:00 GMT", now) == timedelta(0)
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after(None, now) is None
