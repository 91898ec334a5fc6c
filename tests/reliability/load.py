"""A small load of real users for fault tests: sessions, escalations and Pick Up races over HTTP.

Every creating request carries an ``Idempotency-Key`` and is retried with the same key after a
5xx or a broken connection, as a careful client would, so "created twice" can be told from
"answered twice". Claims are raced once, unretried, by every senior. Everything that was
answered is recorded for the invariant checks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.support.factories import Person

API = "/api/v1"
# A request that takes this long is hanging, whatever the machine's load.
HANG_SECONDS = 30.0
_titles = itertools.count(1)


@dataclass
class Call:
    what: str
    status: int | None  # None: no HTTP answer at all
    error: str | None = None


@dataclass
class LoadRecord:
    calls: list[Call] = field(default_factory=list)
    # Session id → title, handoff id → the 201 body, for every creation that was answered.
    sessions: dict[str, str] = field(default_factory=dict)
    handoffs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Handoff id → (claimer id, status) of each claim attempt.
    claims: dict[str, list[tuple[str, int | None]]] = field(default_factory=dict)
    escalations_started: int = 0

    def statuses(self, what: str | None = None) -> Counter[int | None]:
        return Counter(c.status for c in self.calls if what is None or c.what == what)

    def failures(self) -> list[Call]:
        return [c for c in self.calls if c.status is None or c.status >= 500]

    def hung(self) -> list[Call]:
        return [c for c in self.calls if c.error == "timeout"]

    def unexpected(self) -> list[Call]:
        """Answers no client should ever see: a 4xx other than a lost race, or no answer."""
        return [
            c
            for c in self.calls
            if c.status is None or (c.status < 500 and c.status not in (200, 201, 409))
        ]


async def _call(
    client: httpx.AsyncClient, record: LoadRecord, what: str, method: str, url: str, **kw: Any
) -> httpx.Response | None:
    try:
        response = await client.request(method, url, timeout=HANG_SECONDS, **kw)
    except httpx.TimeoutException:
        record.calls.append(Call(what, None, "timeout"))
        return None
    except httpx.TransportError as exc:
        record.calls.append(Call(what, None, type(exc).__name__))
        return None
    record.calls.append(Call(what, response.status_code))
    return response


async def create_retrying(
    client: httpx.AsyncClient,
    record: LoadRecord,
    what: str,
    person: Person,
    url: str,
    body: dict[str, Any],
    *,
    give_up_at: float,
) -> dict[str, Any] | None:
    """POST with an Idempotency-Key until answered (not 5xx), retrying with the same key."""
    headers = {**person.headers, "Idempotency-Key": str(uuid.uuid4())}
    while time.monotonic() < give_up_at:
        response = await _call(client, record, what, "POST", url, json=body, headers=headers)
        if response is not None and response.status_code < 500:
            if response.status_code != 201:
                return None
            answer: dict[str, Any] = response.json()
            return answer
        await asyncio.sleep(0.1)
    return None


async def escalation_loop(
    client: httpx.AsyncClient,
    record: LoadRecord,
    *,
    junior: Person,
    seniors: list[Person],
    stop: asyncio.Event,
    give_up_at: float,
) -> None:
    """Until ``stop``: a session, its escalation, and every senior racing to pick it up."""
    while not stop.is_set() and time.monotonic() < give_up_at:
        title = f"load {next(_titles)}"
        session = await create_retrying(
            client,
            record,
            "session",
            junior,
            f"{API}/ai-sessions",
            {"title": title, "messages": [{"role": "user", "content": "stuck"}]},
            give_up_at=give_up_at,
        )
        if session is None:
            continue
        record.sessions[session["id"]] = title
        record.escalations_started += 1
        handoff = await create_retrying(
            client,
            record,
            "escalate",
            junior,
            f"{API}/ai-sessions/{session['id']}/handoff",
            {"intent": "escalate", "note": title},
            give_up_at=give_up_at,
        )
        if handoff is None:
            continue
        record.handoffs[handoff["id"]] = handoff
        claim_url = f"{API}/ai-sessions/{session['id']}/handoffs/{handoff['id']}/claim"

        async def claim(senior: Person, url: str = claim_url) -> tuple[str, int | None]:
            response = await _call(client, record, "claim", "POST", url, headers=senior.headers)
            return senior.id, None if response is None else response.status_code

        record.claims[handoff["id"]] = list(await asyncio.gather(*(claim(s) for s in seniors)))


@dataclass
class Watcher:
    """A WebSocket client that reconnects with ``?last_event_id=`` as a real one does."""

    events: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0

    def seen(self, type_: str) -> Counter[str]:
        """How many times each handoff's ``type_`` event arrived."""
        return Counter(str(e["data"]["id"]) for e in self.events if e["type"] == type_)

    async def run(self, base: str, person: Person) -> None:
        """Until cancelled."""
        url = base.replace("http://", "ws://", 1) + f"{API}/ws"
        while True:
            last = self.events[-1]["id"] if self.events else None
            try:
                async with connect(
                    url if last is None else f"{url}?last_event_id={last}",
                    additional_headers=person.headers,
                    open_timeout=HANG_SECONDS,
                ) as ws:
                    self.connections += 1
                    async for text in ws:
                        message = json.loads(text)
                        if message.get("type") != "heartbeat":
                            self.events.append(message)
            except (ConnectionClosed, InvalidStatus, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
