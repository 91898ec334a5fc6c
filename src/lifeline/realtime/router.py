"""``GET /events`` (SSE), ``GET /ws`` (WebSocket) and ``GET /presence``."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Query, Request, WebSocket
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocketDisconnect

from lifeline.accounts import service as accounts
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.deps import ContextDep, CurrentUser, PageParams, Principal, SessionDep, authenticate
from lifeline.errors import LifelineError, TooManyRequests
from lifeline.realtime import service
from lifeline.realtime.audience import Viewer
from lifeline.realtime.auth import parse_last_event_id
from lifeline.realtime.hub import CLOSE_SLOW, Connection, Hub
from lifeline.realtime.schemas import PresenceItem, PresenceList, UserRef

log = logging.getLogger(__name__)

router = APIRouter(tags=["real-time"])

LastEventIdQuery = Annotated[
    str | None,
    Query(
        max_length=32,
        description="Replay the events after this id first (as the Last-Event-ID header does).",
    ),
]
# The same path is served ahead of the middleware stack by the real-time plugin (fast_path.py).
WEBSOCKET_PATH = "/api/v1/ws"
# A WebSocket client can't see protocol pings; this lets it tell a quiet stream from a dead one.
HEARTBEAT_TEXT = '{"type":"heartbeat"}'


class Unavailable(LifelineError):
    status_code = 503


class TooManyStreams(TooManyRequests):
    pass


# A WebSocket over the per-user cap is accepted, then closed with this (policy violation).
CLOSE_TOO_MANY = 1008


def realtime_hub(ctx: AppContext) -> Hub:
    hub = ctx.hub
    if hub is None:
        raise Unavailable("Real-time push is not running in this process")
    return hub


@dataclass(frozen=True)
class Opening:
    """An authenticated stream about to subscribe."""

    principal: Principal
    client_last_id: int | None
    latest_at_connect: int

    async def check_cap(self, hub: Hub, cap: int) -> None:
        """Refuse a stream over the user's cap, counting their streams in every process."""
        user_id = self.principal.user.id
        counts = await hub.presence.connection_counts([user_id])
        if max(counts.get(user_id, 0), hub.local_count(user_id)) >= cap:
            raise TooManyStreams(
                f"Too many live connections: at most {cap} per user; close one first"
            )

    def subscribe(self, hub: Hub) -> Connection:
        return hub.connect(
            Viewer.of(self.principal.user),
            token_id=self.principal.token_id,
            web_session_id=self.principal.web_session_id,
            client_last_id=self.client_last_id,
            latest_at_connect=self.latest_at_connect,
        )


async def open_stream(conn: HTTPConnection, ctx: AppContext, last_event_id: str | None) -> Opening:
    client_last_id = parse_last_event_id(conn.headers.get("last-event-id"), last_event_id)
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        principal = await authenticate(conn, db, stream_origin=ctx.settings.base_url)
        latest = await service.latest_event_id(db=db, account_id=principal.user.account_id)
    conn.state.user_id = principal.user.id
    # An id from the future (say, from before a database restore) replays nothing and skips nothing.
    return Opening(
        principal, None if client_last_id is None else min(client_last_id, latest), latest
    )


@router.get(
    "/events",
    response_class=EventSourceResponse,
    summary="Server-sent events: the events you may see, replayed after Last-Event-ID",
)
async def event_stream(
    request: Request, ctx: ContextDep, last_event_id: LastEventIdQuery = None
) -> EventSourceResponse:
    hub = realtime_hub(ctx)
    opening = await open_stream(request, ctx, last_event_id)
    cap = ctx.settings.max_streams_per_user
    await opening.check_cap(hub, cap)

    async def events() -> AsyncIterator[ServerSentEvent]:
        if hub.local_count(opening.principal.user.id) >= cap:
            return  # others opened meanwhile: end at once rather than pass the cap
        conn = opening.subscribe(hub)
        try:
            async for envelope in hub.stream(conn):
                if envelope is None:
                    yield ServerSentEvent(comment="heartbeat")
                else:
                    yield ServerSentEvent(
                        data=envelope.text, event=envelope.type, id=str(envelope.id)
                    )
        finally:
            hub.disconnect(conn)

    return EventSourceResponse(
        events(),
        # The hub sends heartbeats for every connection from one timer.
        ping=0,
        send_timeout=max(ctx.settings.heartbeat_seconds * 2, 10),
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def websocket_stream(websocket: WebSocket) -> None:
    """The same events as ``/events``, one JSON text message each; ``?last_event_id=`` replays."""
    ctx: AppContext = websocket.app.state.ctx
    cap = ctx.settings.max_streams_per_user
    try:
        hub = realtime_hub(ctx)
        opening = await open_stream(websocket, ctx, websocket.query_params.get("last_event_id"))
        await opening.check_cap(hub, cap)
    except TooManyStreams as exc:
        await websocket.accept()
        await websocket.close(code=CLOSE_TOO_MANY, reason=exc.detail[:120])
        return
    except LifelineError as exc:
        await refuse(websocket, exc)
        return
    await websocket.accept()
    if hub.local_count(opening.principal.user.id) >= cap:  # others opened meanwhile
        await websocket.close(code=CLOSE_TOO_MANY, reason="Too many live connections")
        return
    conn = opening.subscribe(hub)
    # A connection may live for days: keep the ids it needs, not the loaded user.
    del opening
    sender = asyncio.create_task(
        send_stream(websocket, hub, conn, send_timeout=max(ctx.settings.heartbeat_seconds * 2, 10))
    )
    try:
        # Clients have nothing to say; reading is how a disconnect is noticed.
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        hub.disconnect(conn)


# A plain Starlette route: a long-lived socket needs no per-connection dependency machinery,
# and one process may hold tens of thousands of them.
router.add_websocket_route("/ws", websocket_stream)


async def send_stream(
    websocket: WebSocket, hub: Hub, conn: Connection, *, send_timeout: float
) -> None:
    try:
        async for envelope in hub.stream(conn):
            async with asyncio.timeout(send_timeout):
                await websocket.send_text(HEARTBEAT_TEXT if envelope is None else envelope.text)
    except (TimeoutError, WebSocketDisconnect, OSError):
        conn.close(CLOSE_SLOW)
    closing = conn.closing or CLOSE_SLOW
    with contextlib.suppress(Exception):
        await websocket.close(code=closing.code, reason=closing.reason)


async def refuse(websocket: WebSocket, exc: LifelineError) -> None:
    """Answer the handshake with the API's status and JSON body (a close code where unsupported).

    Anyone can knock, so a refusal is logged at info, once.
    """
    log.info("WebSocket refused: %s %s", exc.status_code, exc.detail)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        _refused_handshake.set(True)
        await websocket.send_denial_response(JSONResponse(exc.body(), status_code=exc.status_code))
    else:
        await websocket.close(code=4000 + exc.status_code, reason=exc.detail)


# Set in the connection's own task when it was refused with an HTTP answer: uvicorn (0.54,
# websockets-sansio) then still logs "ASGI callable returned without completing handshake" at
# error level, though the answer went out; that line is dropped, the info line above stands.
_refused_handshake: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "lifeline_refused_handshake", default=False
)
_UNCOMPLETED_HANDSHAKE = "ASGI callable returned without completing handshake"


class _RefusalIsNotAnError(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (str(record.msg).startswith(_UNCOMPLETED_HANDSHAKE) and _refused_handshake.get())


logging.getLogger("uvicorn.error").addFilter(_RefusalIsNotAnError())


@router.get("/presence", response_model=PresenceList, summary="Who of your account is online")
async def presence(
    db: SessionDep, ctx: ContextDep, user: CurrentUser, page: PageParams
) -> PresenceList:
    limit, cursor = page
    members, next_cursor = await accounts.list_users(
        db=db, account_id=user.account_id, cursor=cursor, limit=limit
    )
    counts = await realtime_hub(ctx).presence.connection_counts(m.id for m in members)
    return PresenceList(
        items=[
            PresenceItem(
                user=UserRef(id=m.id, name=m.name),
                online=counts[m.id] > 0,
                connections=counts[m.id],
            )
            for m in members
        ],
        next_cursor=next_cursor,
    )
