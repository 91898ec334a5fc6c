"""``/api/v1/ws`` served in front of the HTTP middleware stack.

A WebSocket lives for hours and one process may hold tens of thousands, so every frame kept
alive per connection counts: the HTTP middlewares (request ids and their access log, body-size
limits, security headers, the error pages) each hold one for the socket's whole life while
doing nothing for it. This dispatcher hands the socket straight to its endpoint instead; it
roughly halves what the application adds per idle connection (see bench/RESULTS.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

log = logging.getLogger(__name__)

Endpoint = Callable[[WebSocket], Awaitable[None]]


class WebSocketFastPath:
    def __init__(self, app: ASGIApp, *, path: str, endpoint: Endpoint) -> None:
        self.app = app
        self.path = path
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket" or route_path(scope) != self.path:
            await self.app(scope, receive, send)
            return
        websocket = WebSocket(scope, receive, send)
        try:
            await self.endpoint(websocket)
        except Exception:
            log.exception("WebSocket %s failed", self.path)
            await fail(websocket)


async def fail(websocket: WebSocket) -> None:
    """Before the handshake completes (say the database is overloaded): 503, try again later."""
    state = websocket.application_state
    if state == WebSocketState.CONNECTING:
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(
                JSONResponse({"detail": "Temporarily unavailable; try again"}, status_code=503)
            )
        else:
            await websocket.close(code=1013)
    elif state == WebSocketState.CONNECTED:
        await websocket.close(code=1011)


def route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
