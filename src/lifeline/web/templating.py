"""Jinja2 rendering for pages: filters, cache-busted static URLs, one-shot flash notices."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeSerializer
from markupsafe import Markup

from lifeline import __version__
from lifeline.config import Settings
from lifeline.db import utcnow

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
FLASH_COOKIE = "lifeline_flash"

templates = Jinja2Templates(directory=HERE / "templates")


@cache
def _static_digest(name: str) -> str:
    path = STATIC_DIR / name
    if not path.is_file():
        return __version__
    return hashlib.sha256(path.read_bytes()).hexdigest()[:10]


def static_url(name: str) -> str:
    """``/static/<name>?v=<content hash>``: browsers cache forever, refetch on change."""
    return f"/static/{name}?v={_static_digest(name)}"


def format_age(seconds: float | int | None) -> str:
    """A short human age: ``45s``, ``12m``, ``3h 5m``, ``2d 4h``."""
    if seconds is None:
        return "—"
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m" if minutes >= 10 or secs == 0 else f"{minutes}m {secs}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


JUST_NOW_SECONDS = 10


def format_ago(seconds: float | int | None) -> str:
    """A moment in the past: ``just now``, ``45s ago``, ``3h 5m ago``."""
    if seconds is None:
        return "—"
    if seconds < JUST_NOW_SECONDS:
        return "just now"
    return f"{format_age(seconds)} ago"


def format_time(value: datetime | None) -> str:
    """The absolute time, in UTC (the tooltip; the page's script shows the reader's zone)."""
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def format_relative(value: datetime | None) -> str:
    """``just now``, ``12m ago``, ``3d ago``; a date once it is more than a week old."""
    if value is None:
        return "—"
    seconds = (utcnow() - value).total_seconds()
    if seconds < 7 * 86400:
        minutes = int(seconds // 60)
        if seconds < 3600:
            return format_ago(seconds) if seconds < 60 else f"{minutes}m ago"
        if seconds < 86400:
            return f"{minutes // 60}h ago"
        return f"{minutes // 1440}d ago"
    same_year = value.year == utcnow().year
    return f"{value:%b} {value.day}" + ("" if same_year else f", {value.year}")


def when(value: datetime | None) -> Markup:
    """A past time for people: relative, with the absolute time as its tooltip."""
    if value is None:
        return Markup("—")
    return Markup('<time datetime="{iso}" data-when title="{absolute}">{relative}</time>').format(
        iso=value.isoformat(), absolute=format_time(value), relative=format_relative(value)
    )


# One vocabulary on every page: what the states and roles are called, for people.
STATUS_LABELS = {
    "active": "Active",
    "parked": "Parked",
    "escalated": "Escalated",
    "claimed": "Picked up",
    "resolved": "Resolved",
    "open": "Waiting",
    "cancelled": "Withdrawn",
    "expired": "Expired",
    "pending": "Sending",
    "sent": "Sent",
    "failed": "Failed",
    "skipped": "Skipped",
}
ROLE_HELP = {
    "owner": "Owner: runs the account; picks up escalations and manages the team, owners included",
    "admin": "Admin: picks up escalations and manages the team",
    "engineer": "Engineer: escalates sessions and picks up teammates' escalations",
    "viewer": "Viewer: reads the queue and escalated sessions; can't escalate or pick up, "
    "and is never notified",
}


def status_label(status: str) -> str:
    return STATUS_LABELS.get(str(status), str(status).capitalize())


def role_help(role: str) -> str:
    return ROLE_HELP.get(str(role), str(role))


def iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def seconds_since(value: datetime | None) -> float | None:
    return (utcnow() - value).total_seconds() if value else None


templates.env.filters["age"] = format_age
templates.env.filters["when"] = when
templates.env.filters["when_text"] = format_time
templates.env.filters["ago"] = format_ago
templates.env.filters["iso"] = iso
templates.env.filters["tojson_attr"] = lambda value: json.dumps(value, separators=(",", ":"))
templates.env.globals["static_url"] = static_url
templates.env.globals["status_label"] = status_label
templates.env.globals["role_help"] = role_help
templates.env.globals["role_help_all"] = ROLE_HELP
templates.env.globals["version"] = __version__
templates.env.globals["now_seconds"] = seconds_since
templates.env.globals["server_now"] = lambda: utcnow().isoformat()


def _flash_serializer(settings: Settings) -> URLSafeSerializer:
    return URLSafeSerializer(settings.secret_key, salt="lifeline.flash")


def redirect(
    request: Request, url: str, *, notice: str | None = None, error: str | None = None
) -> RedirectResponse:
    """303 to ``url``, carrying a notice for the next page in a signed one-shot cookie."""
    response = RedirectResponse(url, status_code=303)
    if notice or error:
        settings: Settings = request.app.state.settings
        value = _flash_serializer(settings).dumps({"notice": notice, "error": error})
        response.set_cookie(
            FLASH_COOKIE,
            value,
            max_age=60,
            httponly=True,
            samesite="lax",
            secure=settings.base_url.startswith("https://"),
        )
    return response


def _take_flash(request: Request) -> dict[str, str | None]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return {}
    settings: Settings = request.app.state.settings
    try:
        value = _flash_serializer(settings).loads(raw)
    except BadSignature:
        return {}
    return value if isinstance(value, dict) else {}


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    flash = _take_flash(request)
    values: dict[str, Any] = {
        "notice": flash.get("notice"),
        "error": flash.get("error"),
    }
    values.update(context or {})
    response = templates.TemplateResponse(
        request, name, values, status_code=status_code, headers=headers
    )
    # Pages show one person's view of their team: never kept by shared caches.
    response.headers["Cache-Control"] = "no-store"
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE)
    return response


def plain_redirect(url: str) -> Response:
    return RedirectResponse(url, status_code=303)
