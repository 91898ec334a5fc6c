"""Who is connecting: the API's Bearer token, or the web session cookie from the app's own pages.

A browser attaches cookies to a WebSocket handshake whatever page opened it, so a cookie alone
would let any site read a signed-in user's stream (cross-site WebSocket hijacking). With the
cookie the ``Origin`` must therefore be the app's own; an ``EventSource`` on the same origin
sends no ``Origin`` at all, and is recognised by ``Sec-Fetch-Site: same-origin`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from lifeline.accounts import service as accounts
from lifeline.accounts.models import User
from lifeline.deps import SESSION_COOKIE
from lifeline.errors import Forbidden, Unauthorized, Unprocessable

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


@dataclass(frozen=True)
class StreamPrincipal:
    user: User
    token_id: str | None = None
    web_session_id: str | None = None


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


def bearer_secret(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return secret.strip()


async def authenticate_stream(
    *, db: AsyncSession, conn: HTTPConnection, base_url: str
) -> StreamPrincipal:
    """The Bearer header first, as for the API; else the cookie, from the app's own origin only."""
    secret = bearer_secret(conn)
    if secret is not None:
        user, token = await accounts.authenticate_token(db=db, secret=secret)
        return StreamPrincipal(user=user, token_id=token.id)
    cookie = conn.cookies.get(SESSION_COOKIE)
    if cookie:
        if not same_origin(conn, base_url):
            raise Forbidden("Origin not allowed: the session cookie works from this app only")
        user, web_session = await accounts.authenticate_web_session(db=db, secret=cookie)
        return StreamPrincipal(user=user, web_session_id=web_session.id)
    raise Unauthorized("Authentication required")


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    """The client's last event id: the header (an EventSource's reconnect) before the query."""
    for field, value in (("Last-Event-ID", header), ("last_event_id", query)):
        if value is None or value.strip() == "":
            continue
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise Unprocessable(f"{field}: must be an event id (a non-negative integer)")
        return int(text)
    return None
