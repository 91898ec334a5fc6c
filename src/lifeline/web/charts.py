"""Small server-made SVG charts: daily bars and a daily line, styled by the page's CSS.

No script and no inline style (the pages' CSP forbids both): shapes carry classes and
presentation attributes only, and each bar or point has a ``<title>`` for hover and screen
readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str
    values: Sequence[float | None]


def nice_scale(value: float, unit: float = 1.0) -> tuple[float, int]:
    """A round top for an axis holding ``value`` and how many equal steps divide it.

    The top is 1, 2 or 5 × 10^k ``unit``s (at least one unit), and the steps fall on round
    numbers too: 1 → 5 steps of 0.2, 2 → 4 of 0.5, 5 → 5 of 1 (times 10^k).
    """
    scaled = value / unit
    if scaled <= 1:
        return unit, 5 if unit == 1.0 else 4
    power = 10.0 ** math.floor(math.log10(scaled))
    for mantissa, steps in ((1, 5), (2, 4), (5, 5), (10, 5)):
        if mantissa * power >= scaled:
            return mantissa * power * unit, steps
    return 10 * power * unit, 5  # pragma: no cover - the loop always returns


def count_scale(value: float) -> tuple[float, int]:
    """Counts are whole: up to 5, one step per unit; beyond, a round scale."""
    if value <= 5:
        top = max(1, math.ceil(value))
        return float(top), top
    return nice_scale(value)


def duration_scale(seconds: float) -> tuple[float, int]:
    """A round top in seconds, minutes, hours or days, whichever the values live in."""
    for unit, limit in ((1.0, 90.0), (60.0, 90 * 60.0), (3600.0, 48 * 3600.0)):
        if seconds <= limit:
            return nice_scale(seconds, unit)
    return nice_scale(seconds, 86400.0)


def format_duration(seconds: float) -> str:
    """``45s``, ``12m``, ``2.5h``, ``1.5d``: at most one decimal, none when whole."""
    for unit, suffix, limit in ((1, "s", 90), (60, "m", 90 * 60), (3600, "h", 48 * 3600)):
        if seconds < limit:
            return f"{round(seconds / unit, 1):g}{suffix}"
    return f"{round(seconds / 86400, 1):g}d"


def format_count(value: float) -> str:
    return f"{round(value, 1):g}"


def _frame(
    label: str,
    days: Sequence[date],
    scale: tuple[float, int],
    fmt: Callable[[float], str],
    body: str,
) -> Markup:
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="xMidYMid meet">',
        f"<title>{escape(label)}</title>",
    ]
    top, steps = scale
    for i in range(steps + 1):
        value = top * i / steps
        y = TOP + plot_h - plot_h * i / steps
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(value))}</text>"
        )
    if days:
        every = max(1, math.ceil(len(days) / 8))
        step = plot_w / len(days)
        for i, day in enumerate(days):
            if i % every == 0:
                x = LEFT + step * (i + 0.5)
                parts.append(
                    f'<text class="tick" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                    f"{day:%b} {day.day}</text>"
                )
    parts.append(
        f'<line class="axis" x1="{LEFT}" x2="{LEFT + plot_w}" '
        f'y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>'
    )
    parts.append(body)
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    *,
    label: str,
    days: Sequence[date],
    series: Sequence[Series],
    fmt: Callable[[float], str] = format_count,
    scale_for: Callable[[float], tuple[float, int]] = count_scale,
) -> Markup:
    """Bars per day, one per series side by side (e.g. escalations beside claimed)."""
    values = [v for s in series for v in s.values if v is not None]
    scale = scale_for(max(values, default=0))
    top = scale[0]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(days))
    bar_w = step * 0.8 / max(1, len(series))
    body = []
    for i, day in enumerate(days):
        for k, s in enumerate(series):
            value = s.values[i] if i < len(s.values) else None
            if not value:
                continue
            h = plot_h * value / top
            x = LEFT + step * i + step * 0.1 + bar_w * k
            y = TOP + plot_h - h
            body.append(
                f'<rect class="bar {escape(s.css_class)}" x="{x:.1f}" y="{y:.1f}" '
                f'width="{bar_w:.1f}" height="{h:.1f}"><title>{day.isoformat()}: '
                f"{escape(fmt(value))} {escape(s.name)}</title></rect>"
            )
    return _frame(label, days, scale, fmt, "".join(body))


def line_chart(
    *,
    label: str,
    days: Sequence[date],
    series: Series,
    fmt: Callable[[float], str] = format_duration,
    scale_for: Callable[[float], tuple[float, int]] = duration_scale,
) -> Markup:
    """A line per day through the known values; days without a value leave a gap."""
    values = [v for v in series.values if v is not None]
    scale = scale_for(max(values, default=0))
    top = scale[0]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(days))
    runs: list[list[tuple[float, float]]] = [[]]
    dots = []
    for i, day in enumerate(days):
        value = series.values[i] if i < len(series.values) else None
        if value is None:
            if runs[-1]:
                runs.append([])
            continue
        x = LEFT + step * (i + 0.5)
        y = TOP + plot_h - plot_h * value / top
        runs[-1].append((x, y))
        dots.append(
            f'<circle class="dot {escape(series.css_class)}" cx="{x:.1f}" cy="{y:.1f}" r="3.5">'
            f"<title>{day.isoformat()}: {escape(fmt(value))} {escape(series.name)}</title>"
            "</circle>"
        )
    lines = [
        f'<polyline class="line {escape(series.css_class)}" points="'
        + " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
        + '"/>'
        for run in runs
        if len(run) > 1
    ]
    return _frame(label, days, scale, fmt, "".join(lines + dots))
