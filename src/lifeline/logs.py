"""Structured logs: JSON lines for machines, plain lines for people, a request id on both.

The request id lives in a context variable set by :class:`lifeline.middleware.RequestIdMiddleware`.
``asyncio.create_task`` copies the current context into the task, so after-commit work spawned
while a request is handled (the dispatch of its notifications, its live push) logs with the id of
the request that caused it.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("lifeline_request_id", default=None)

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is data.
_RECORD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "taskName", "color_message"}
)


class RequestContextFilter(logging.Filter):
    """Stamps each record with the request id of the context it was logged from."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(entry, default=str, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    """``12:00:01.123 INFO  lifeline.app [req 3f2a…] message key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S.%f")[:-3]
        request_id = getattr(record, "request_id", None)
        parts = [when, f"{record.levelname:<7}", record.name]
        if request_id:
            parts.append(f"[{request_id[:12]}]")
        parts.append(record.getMessage())
        parts.extend(f"{k}={v}" for k, v in _extras(record).items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return line


class DemoFormatter(logging.Formatter):
    """For a person watching ``make demo``: ``12:00:01  GET /sessions → 200 (4 ms)``.

    No request ids, no logger names for requests; warnings and errors say so up front.
    """

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        level = "" if record.levelno == logging.INFO else f"{record.levelname}: "
        if record.name == "lifeline.access":
            extras = _extras(record)
            text = f"{extras.get('method', '')} {extras.get('path', '')} → {extras.get('status')}"
            if "duration_ms" in extras:
                text += f" ({extras['duration_ms']:.0f} ms)"
        else:
            details = " ".join(f"{k}={v}" for k, v in _extras(record).items())
            text = f"{record.getMessage()} {details}".rstrip()
        line = f"{when}  {level}{text}"
        if record.exc_info:
            line += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return line


# Requests that every open page makes on its own: assets and the live stream.
_ROUTINE_PREFIXES = ("/static/", "/api/v1/events", "/api/v1/ws", "/favicon")


class RoutineRequestFilter(logging.Filter):
    """Drops the access lines of static files and the event stream (the demo's log)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "lifeline.access":
            return True
        path = str(getattr(record, "path", ""))
        return not path.startswith(_ROUTINE_PREFIXES)


def wants_json(setting: bool | None) -> bool:
    """JSON when asked, or when nobody is watching stderr (a service manager, a container)."""
    if setting is not None:
        return setting
    return not sys.stderr.isatty()


def logging_config(*, json_lines: bool, level: str = "INFO", demo: bool = False) -> dict[str, Any]:
    """A ``dictConfig`` for the whole process, uvicorn's loggers included.

    Handed to uvicorn as ``log_config`` so that every server process it spawns applies it.
    ``demo`` is for a person at a terminal: short lines, no access lines for static files and
    the event stream, and the mail sink's SMTP conversation kept quiet.
    """
    if json_lines:
        formatter = "lifeline.logs.JsonFormatter"
    elif demo:
        formatter = "lifeline.logs.DemoFormatter"
    else:
        formatter = "lifeline.logs.HumanFormatter"
    filters = ["request", "routine"] if demo else ["request"]
    loggers: dict[str, Any] = {
        "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
        "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
        "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": True},
    }
    if demo:
        # aiosmtpd logs every SMTP command of every message at INFO on "mail.log".
        loggers["mail.log"] = {"level": "WARNING", "handlers": [], "propagate": True}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request": {"()": "lifeline.logs.RequestContextFilter"},
            "routine": {"()": "lifeline.logs.RoutineRequestFilter"},
        },
        "formatters": {"lifeline": {"()": formatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "lifeline",
                "filters": filters,
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": loggers,
    }


def env_bool(name: str) -> bool | None:
    raw = os.environ.get(name, "").strip().lower()
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    return None


def settings_from_env() -> tuple[bool, str]:
    """(json_lines, level) from LIFELINE_LOG_JSON and LIFELINE_LOG_LEVEL.

    Read straight from the environment so that logging works before (and when) the full
    settings refuse to load, for example to report a missing secret key.
    """
    level = os.environ.get("LIFELINE_LOG_LEVEL", "INFO").strip().upper() or "INFO"
    if level not in logging.getLevelNamesMapping():
        level = "INFO"
    return wants_json(env_bool("LIFELINE_LOG_JSON")), level


def configure_logging(
    *, json_lines: bool | None = None, level: str | None = None, demo: bool = False
) -> None:
    """Configure the process's root logger (the CLI calls this before any command)."""
    env_json, env_level = settings_from_env()
    logging.config.dictConfig(
        logging_config(
            json_lines=env_json if json_lines is None else json_lines,
            level=level or env_level,
            demo=demo,
        )
    )
