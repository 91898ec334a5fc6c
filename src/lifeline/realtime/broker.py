"""What travels between processes, and the in-process broker (the default, one process)."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Protocol

from lifeline.after_commit import DropConnections, PublishEvent

# The after-commit side effects themselves travel: no second type, no translation.
Notice = PublishEvent | DropConnections


def encode(notice: Notice, *, origin: str) -> str:
    kind = "event" if isinstance(notice, PublishEvent) else "drop"
    return json.dumps({"kind": kind, "origin": origin, **asdict(notice)}, separators=(",", ":"))


def decode(raw: str | bytes) -> tuple[str, Notice]:
    """The sending process's id and the notice; ValueError when it isn't one of ours."""
    try:
        body = json.loads(raw)
        kind, origin = body.pop("kind"), body.pop("origin")
        if kind == "event":
            return origin, PublishEvent(**body)
        if kind == "drop":
            return origin, DropConnections(**body)
    except (TypeError, KeyError, AttributeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a broker notice: {exc}") from exc
    raise ValueError(f"unknown notice kind {kind!r}")


class Listener(Protocol):
    """The receiving side of a broker: this process's hub of connections."""

    def deliver(self, notice: Notice) -> None: ...

    def broker_lost(self) -> None: ...

    def broker_resuming(self) -> None: ...

    async def broker_resumed(self) -> None: ...


class Broker(Protocol):
    """Carries notices to every process's listener. ``publish`` never raises."""

    async def start(self) -> None: ...

    async def publish(self, notice: Notice) -> None: ...

    async def close(self) -> None: ...


class MemoryBroker:
    """One process: publishing is handing the notice to the local hub."""

    def __init__(self, listener: Listener) -> None:
        self.listener = listener

    async def start(self) -> None:
        return None

    async def publish(self, notice: Notice) -> None:
        self.listener.deliver(notice)

    async def close(self) -> None:
        return None
