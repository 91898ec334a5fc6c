"""A database that can't be reached for a moment answers 503 (retry), not a crash.

Without this, a request that finds PostgreSQL restarting ends in an unhandled exception: a
bare 500 after which the server drops the connection, so a keep-alive client or a load
balancer also loses its next request on that connection. Here such failures become one JSON
503 with ``Retry-After``, the connection stays usable, and the next request, once the database
is back, simply works (the pool's pre-ping replaces the dead connections).
"""

from __future__ import annotations

import logging
import socket

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

log = logging.getLogger(__name__)

DETAIL = "Temporarily unavailable; try again"
RETRY_AFTER_SECONDS = 1
# SQLSTATE classes of a server that is unreachable, out of resources or shutting down/starting.
_UNAVAILABLE_SQLSTATE = ("08", "53", "57")


def database_unavailable(exc: BaseException) -> bool:
    """True for "can't talk to the database right now"; False for a bad statement or a bug."""
    if isinstance(exc, ConnectionError | TimeoutError | socket.gaierror | PoolTimeout):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated or isinstance(exc, OperationalError):
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate[:2] in _UNAVAILABLE_SQLSTATE:
        return True
    # asyncpg reports a connection that died mid-statement without a SQLSTATE.
    return "connection was closed" in str(exc.orig) or "connection is closed" in str(exc.orig)


async def _unavailable(request: Request, exc: Exception) -> Response:
    if not database_unavailable(exc):
        raise exc
    log.warning("%s %s: database unavailable: %s", request.method, request.url.path, exc)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if not request.url.path.startswith("/api/"):  # a page: people read this one
        return PlainTextResponse(f"{DETAIL}.", status_code=503, headers=headers)
    return JSONResponse({"detail": DETAIL}, status_code=503, headers=headers)


def install(app: FastAPI) -> None:
    """Answer database outages with 503 (more specific handlers, such as IntegrityError, win)."""
    for exc_type in (OSError, DBAPIError, PoolTimeout):
        app.add_exception_handler(exc_type, _unavailable)
