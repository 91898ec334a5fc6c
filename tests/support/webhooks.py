"""A real HTTP receiver on loopback that checks every webhook with ``standardwebhooks``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    # The parsed payload when the signature verified with one of the receiver's secrets.
    payload: dict[str, Any] | None
    verified_with: list[str]


@dataclass
class Reply:
    status: int = 200
    body: str = "ok"
    headers: dict[str, str] = field(default_factory=dict)
    # Seconds to wait before answering (a hanging receiver).
    delay: float = 0.0


class Receiver:
    """Answers each request with the next queued :class:`Reply` (then ``default``)."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.received: list[Received] = []
        self.replies: list[Reply] = []
        self.default = Reply()
        self.url = ""

    def verify(
        self, body: bytes, headers: dict[str, str]
    ) -> tuple[dict[str, Any] | None, list[str]]:
        payload: dict[str, Any] | None = None
        verified: list[str] = []
        for secret in self.secrets:
            try:
                payload = Webhook(secret).verify(body, headers)
                verified.append(secret)
            except WebhookVerificationError:
                continue
        return payload, verified

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        payload, verified = self.verify(body, headers)
        self.received.append(Received(headers, body, payload, verified))
        reply = self.replies.pop(0) if self.replies else self.default
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, text=reply.body, headers=reply.headers)

    @property
    def verified(self) -> list[dict[str, Any]]:
        return [r.payload for r in self.received if r.payload is not None]


@asynccontextmanager
async def webhook_receiver(path: str = "/hook") -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post(path, receiver.handle)
    app.router.add_post("/redirect", _redirect)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None and server.sockets
    port = server.sockets[0].getsockname()[1]
    receiver.url = f"http://127.0.0.1:{port}{path}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


async def _redirect(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/hook")
