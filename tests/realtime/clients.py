"""Real-time clients for tests: a WebSocket (``websockets``) and an SSE stream (httpx-sse).

Each collects what the server sends into a queue, so a test can wait for the next event with a
deadline, and check order and counts rather than timings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.factories import Person

API = "/api/v1"
WAIT = 15.0


@dataclass
class Received:
    """Events from one stream, in arrival order (heartbeats left out)."""

    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    raw: list[str] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            return await self.events.get()

    async def next_of(self, type_: str) -> dict[str, Any]:
        """The next event, which must be of ``type_``."""
        event = await self.next()
        assert event["type"] == type_, event
        return event

    async def wait_ended(self) -> None:
        async with asyncio.timeout(WAIT):
            await self.ended.wait()

    def pending(self) -> list[dict[str, Any]]:
        items = []
        while not self.events.empty():
            items.append(self.events.get_nowait())
        return items


def ws_url(base: str, last_event_id: str | None = None) -> str:
    url = base.replace("http://", "ws://", 1) + f"{API}/ws"
    return url if last_event_id is None else f"{url}?last_event_id={last_event_id}"


@asynccontextmanager
async def ws_stream(
    base: str,
    person: Person | None = None,
    *,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
) -> AsyncIterator[Received]:
    received = Received()
    all_headers = {**(person.headers if person else {}), **(headers or {})}
    async with connect(
        ws_url(base, last_event_id),
        additional_headers=all_headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=WAIT,
    ) as ws:
        task = asyncio.create_task(_read_ws(ws, received))
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _read_ws(ws: ClientConnection, received: Received) -> None:
    try:
        async for text in ws:
            assert isinstance(text, str)
            message = json.loads(text)
            if message.get("type") == "heartbeat":
                continue
            received.raw.append(text)
            received.events.put_nowait(message)
    except ConnectionClosed:
        pass
    finally:
        received.close_code = ws.close_code
        received.ended.set()


@asynccontextmanager
async def sse_stream(
    client: httpx.AsyncClient,
    person: Person | None = None,
    *,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[Received]:
    received = Received()
    all_headers = {**(person.headers if person else {}), **(headers or {})}
    if last_event_id is not None:
        all_headers["Last-Event-ID"] = last_event_id
    async with aconnect_sse(
        client, "GET", f"{API}/events", headers=all_headers, timeout=httpx.Timeout(WAIT, read=None)
    ) as source:
        source.response.raise_for_status()
        task = asyncio.create_task(_read_sse(source.aiter_sse(), received))
        try:
            yield received
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _read_sse(events: AsyncIterator[Any], received: Received) -> None:
    try:
        async for sse in events:
            if not sse.data:
                # A heartbeat comment; EventSource dispatches nothing for it either.
                continue
            message = json.loads(sse.data)
            # The SSE framing repeats the message's own id and type.
            assert sse.id == message["id"] and sse.event == message["type"], sse
            received.raw.append(sse.data)
            received.events.put_nowait(message)
    except (httpx.HTTPError, asyncio.CancelledError):
        pass
    finally:
        received.ended.set()


async def connections_of(client: httpx.AsyncClient, viewer: Person, person: Person) -> int:
    response = await client.get(f"{API}/presence", headers=viewer.headers)
    assert response.status_code == 200, response.text
    for item in response.json()["items"]:
        if item["user"]["id"] == person.id:
            return int(item["connections"])
    raise AssertionError(f"{person.name} is not listed in presence")


async def wait_connections(
    client: httpx.AsyncClient, person: Person, count: int, *, viewer: Person | None = None
) -> None:
    """Wait until ``person`` has ``count`` live connections (so they are subscribed)."""
    async with asyncio.timeout(WAIT):
        while await connections_of(client, viewer or person, person) != count:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
