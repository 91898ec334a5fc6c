"""Server-made SVG charts: scales, bar heights, gaps, escaping."""

from __future__ import annotations

import re
from datetime import date, timedelta

from lifeline.web.charts import (
    Series,
    bar_chart,
    count_scale,
    duration_scale,
    format_duration,
    line_chart,
    nice_scale,
)

DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(4)]


def test_scales_land_on_round_numbers() -> None:
    assert nice_scale(7) == (10, 5) and nice_scale(12) == (20, 4) and nice_scale(101) == (200, 4)
    assert count_scale(0) == (1, 1) and count_scale(3) == (3, 3) and count_scale(7) == (10, 5)
    assert duration_scale(45) == (50, 5)
    assert duration_scale(2000) == (3000, 5)  # 50 minutes, in 10-minute steps
    assert duration_scale(6 * 3600) == (36000, 5)  # 10 hours


def test_durations_read_as_people_say_them() -> None:
    assert [format_duration(s) for s in (42, 120, 5400, 9000, 200_000)] == [
        "42s",
        "2m",
        "1.5h",
        "2.5h",
        "2.3d",
    ]


def test_bars_are_proportional_and_titled() -> None:
    svg = str(
        bar_chart(
            label="Escalations",
            days=DAYS,
            series=[Series("escalations", "escalations", [4, 2, 0, 1])],
        )
    )
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([\d.]+)"', svg)]
    assert len(heights) == 3  # a zero draws nothing
    assert heights[0] == heights[1] * 2 == heights[2] * 4
    assert "<title>2026-03-01: 4 escalations</title>" in svg
    assert 'role="img"' in svg and "style=" not in svg


def test_a_line_breaks_where_a_day_has_no_value() -> None:
    svg = str(
        line_chart(
            label="Time to pick up",
            days=DAYS,
            series=Series("median", "ttc", [60, 120, None, 30]),
        )
    )
    assert svg.count("<polyline") == 1  # days 1-2 joined; day 4 alone is a dot
    assert svg.count("<circle") == 3


def test_labels_are_escaped() -> None:
    svg = str(
        bar_chart(label='<script>"x"</script>', days=DAYS[:1], series=[Series("<b>", "c", [1])])
    )
    assert "<script>" not in svg and "&lt;b&gt;" in svg
