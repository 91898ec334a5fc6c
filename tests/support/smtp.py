"""Real SMTP servers on loopback for tests: a recording aiosmtpd server, and a hanging one.

The recorder runs aiosmtpd in its own thread (its own event loop), so it keeps answering while a
test blocks on a subprocess, and it can be told to be slow for one recipient or to refuse.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.support.live import free_port


@dataclass(frozen=True)
class Received:
    """One message the server accepted, in the order transactions completed."""

    seq: int
    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    raw: bytes

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


@dataclass
class _Behaviour:
    # Recipient address → seconds its DATA takes; ``slow_once`` only the first time.
    slow: dict[str, float] = field(default_factory=dict)
    slow_once: bool = False
    # An SMTP reply such as "554 Transaction failed" given instead of accepting DATA.
    refuse: str | None = None
    # Recipient addresses whose first DATA is held until ``release()`` (at most a minute).
    hold: set[str] = field(default_factory=set)
    released: threading.Event = field(default_factory=threading.Event)


class RecordingHandler:
    def __init__(self) -> None:
        self.behaviour = _Behaviour()
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._started: list[str] = []
        self._slowed: set[str] = set()
        self._held: set[str] = set()

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        rcpts = tuple(envelope.rcpt_tos)
        with self._lock:
            self._started.extend(rcpts)
            delay = 0.0
            for rcpt in rcpts:
                if rcpt in self.behaviour.slow and not (
                    self.behaviour.slow_once and rcpt in self._slowed
                ):
                    delay = max(delay, self.behaviour.slow[rcpt])
                    self._slowed.add(rcpt)
            refuse = self.behaviour.refuse
            held = [r for r in rcpts if r in self.behaviour.hold and r not in self._held]
            self._held.update(held)
        if refuse:
            return refuse
        if delay:
            await asyncio.sleep(delay)
        if held:  # released from the test's thread, so wait for it in a thread
            await asyncio.to_thread(self.behaviour.released.wait, 60)
        raw = bytes(envelope.content)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._lock:
            self._received.append(
                Received(len(self._received) + 1, envelope.mail_from, rcpts, parsed, raw)
            )
        return "250 Message accepted for delivery"

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def started(self) -> list[str]:
        with self._lock:
            return list(self._started)


class SmtpRecorder:
    """An aiosmtpd server on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self, port: int | None = None, **server_kwargs: Any) -> None:
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.handler = RecordingHandler()
        self._controller = Controller(
            self.handler, hostname=self.host, port=self.port, **server_kwargs
        )

    def start(self) -> SmtpRecorder:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    # What it should do next.
    def slow_for(self, address: str, seconds: float, *, once: bool = False) -> None:
        self.handler.behaviour.slow[address] = seconds
        self.handler.behaviour.slow_once = once

    def hold_for(self, address: str) -> None:
        """Keep this recipient's first transaction waiting before the final reply."""
        self.handler.behaviour.hold.add(address)

    def release(self) -> None:
        self.handler.behaviour.released.set()

    def refuse(self, reply: str | None = "554 5.7.1 Transaction failed") -> None:
        self.handler.behaviour.refuse = reply

    # What it got.
    @property
    def messages(self) -> list[Received]:
        return self.handler.received()

    def started_for(self, address: str) -> int:
        return self.handler.started().count(address)

    def to(self, address: str) -> list[Received]:
        return [m for m in self.messages if address in m.rcpt_tos]

    def recipients(self) -> list[str]:
        return sorted(r for m in self.messages for r in m.rcpt_tos)

    async def wait_for(self, count: int, *, within: float = 30.0) -> list[Received]:
        """Wait (bounded) until at least ``count`` messages arrived."""
        deadline = time.monotonic() + within
        while len(self.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} messages, got {self.messages!r}")
            await asyncio.sleep(0.02)
        return self.messages


@contextmanager
def smtp_recorder(port: int | None = None, **server_kwargs: Any) -> Iterator[SmtpRecorder]:
    server = SmtpRecorder(port, **server_kwargs).start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def hanging_smtp_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        port: int = listener.getsockname()[1]
        yield port


def closed_port() -> int:
    """A loopback port with nothing listening: connections are refused at once."""
    return free_port()
