"""FastAPI dependencies: the request's unit of work, the caller, and role gates.

:func:`authenticate` is the one way in for every connection: API requests, the pages' cookie
requests, and live streams (SSE and WebSocket).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.requests import HTTPConnection

from lifeline.accounts import service as accounts
from lifeline.accounts.models import User, is_manager, is_senior
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.errors import Forbidden, Unauthorized

SESSION_COOKIE = "lifeline_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_db(ctx: ContextDep) -> AsyncIterator[AsyncSession]:
    # scope="function" below: commit happens before the response is sent, so a failed commit
    # is an error answer, never a 201 for something that did not persist.
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


async def get_reader(ctx: ContextDep, db: SessionDep) -> AsyncIterator[AsyncSession]:
    """For a route that only reads: on PostgreSQL a session outside any transaction (each
    statement one round trip, no ``BEGIN``/``COMMIT``; under READ COMMITTED a lone read sees
    the same either way), closed before the answer is sent; on SQLite the request's unit of
    work."""
    if ctx.reads is None:
        yield db
        return
    async with ctx.reads() as read:
        yield read


ReaderDep = Annotated[AsyncSession, Depends(get_reader, scope="function")]


@dataclass(frozen=True)
class Principal:
    user: User
    token_id: str | None = None
    web_session_id: str | None = None
    csrf_token: str | None = None


def bearer_secret(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return secret.strip()


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` as browsers write it in ``Origin`` (default port left out)."""
    parts = urlsplit(url.strip())
    scheme = (parts.scheme or "http").lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is None or port == DEFAULT_PORTS.get(scheme):
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def same_origin(conn: HTTPConnection, base_url: str) -> bool:
    origin = conn.headers.get("origin")
    if origin is not None:
        try:
            return origin != "null" and origin_of(origin) == origin_of(base_url)
        except ValueError:  # "http://host:99999", "http://[::1": no origin of ours
            return False
    # No Origin: only a same-origin, non-WebSocket browser request (EventSource) omits it.
    return conn.scope["type"] == "http" and conn.headers.get("sec-fetch-site") == "same-origin"


async def authenticate(
    conn: HTTPConnection,
    db: AsyncSession,
    *,
    stream_origin: str | None = None,
    lookups: AsyncEngine | None = None,
) -> Principal:
    """Bearer token first, else the web session cookie.

    With the cookie, a request that changes something needs the CSRF header. A live stream
    (``stream_origin``: the app's own base URL) has no such header to send, and a browser
    attaches cookies to a WebSocket handshake whatever page opened it, so a cookie alone would
    let any site read a signed-in user's stream: with the cookie its ``Origin`` must be the
    app's own (an ``EventSource`` on the same origin sends none, and is recognised by
    ``Sec-Fetch-Site: same-origin`` instead).

    With ``lookups`` (PostgreSQL's connections outside a transaction) a bearer token is looked
    up there, in one round trip, and its user merged into ``db`` without a second read.
    """
    secret = bearer_secret(conn)
    if secret is not None:
        if lookups is None:
            user, token_id = await accounts.authenticate_token(db=db, secret=secret)
        else:
            async with lookups.connect() as read:
                user, token_id = await accounts.authenticate_token(db=read, secret=secret)
        return Principal(user=await db.merge(user, load=False), token_id=token_id)
    cookie = conn.cookies.get(SESSION_COOKIE)
    if cookie:
        if stream_origin is not None and not same_origin(conn, stream_origin):
            raise Forbidden("Origin not allowed: the session cookie works from this app only")
        user, web_session = await accounts.authenticate_web_session(db=db, secret=cookie)
        if (
            stream_origin is None
            and conn.scope.get("method") not in SAFE_METHODS
            and conn.headers.get(CSRF_HEADER) != web_session.csrf_token
        ):
            raise Forbidden("CSRF token missing or invalid")
        return Principal(
            user=user, web_session_id=web_session.id, csrf_token=web_session.csrf_token
        )
    raise Unauthorized("Authentication required")


async def get_principal(request: Request, ctx: ContextDep, db: SessionDep) -> Principal:
    # On PostgreSQL the credentials are read outside the request's transaction (one round
    # trip, not three for a request that then reads or writes nothing else); the unit of
    # work gets the user as if it had loaded it itself, without reading it again.
    if ctx.reads is None or bearer_secret(request) is not None:
        principal = await authenticate(request, db, lookups=ctx.read_engine)
    else:
        async with ctx.reads() as read:
            principal = await authenticate(request, read)
        principal = replace(principal, user=await db.merge(principal.user, load=False))
    request.state.user_id = principal.user.id
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: PrincipalDep) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_engineer_or_admin(user: CurrentUser) -> User:
    if not is_senior(user):
        raise Forbidden("Engineer or admin access required")
    return user


async def require_admin(user: CurrentUser) -> User:
    if not is_manager(user):
        raise Forbidden("Admin or owner access required")
    return user


SeniorUser = Annotated[User, Depends(require_engineer_or_admin)]
AdminUser = Annotated[User, Depends(require_admin)]


async def page_params(
    ctx: ContextDep,
    limit: Annotated[
        int, Query(ge=1, description="page size, at most LIFELINE_MAX_PAGE_SIZE (100)")
    ] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> tuple[int, str | None]:
    most = ctx.settings.max_page_size
    if limit > most:
        raise RequestValidationError(
            [
                {
                    "type": "less_than_equal",
                    "loc": ("query", "limit"),
                    "msg": f"Input should be less than or equal to {most}",
                    "input": limit,
                    "ctx": {"le": most},
                }
            ]
        )
    return limit, cursor


PageParams = Annotated[tuple[int, str | None], Depends(page_params)]


# Creating routes take this header: a retry with the same key gets the first answer back.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID); retries with the same key return the first "
        "answer and create nothing twice.",
    ),
]
