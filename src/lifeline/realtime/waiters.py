"""Long-polls waiting for news about one session (an agent's wait), woken by its events.

A waiter holds no connection and no database session while it waits: just an
``asyncio.Event`` that the hub sets when an event about the session reaches this process,
from this process or another one through the broker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from lifeline.after_commit import PublishEvent


class Waiters:
    def __init__(self) -> None:
        self._by_session: dict[str, set[asyncio.Event]] = {}

    @contextmanager
    def watch(self, session_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever something happens to ``session_id`` while the block runs."""
        wake = asyncio.Event()
        members = self._by_session.setdefault(session_id, set())
        members.add(wake)
        try:
            yield wake
        finally:
            members.discard(wake)
            if not members:
                self._by_session.pop(session_id, None)

    def notify(self, notice: PublishEvent) -> None:
        data = notice.message.get("data")
        session_id = data.get("session_id") if isinstance(data, dict) else None
        if session_id is None:
            return
        for wake in tuple(self._by_session.get(session_id, ())):
            wake.set()

    def wake_all(self) -> None:
        """Events may have been missed (the broker was away): everyone looks again."""
        for members in tuple(self._by_session.values()):
            for wake in tuple(members):
                wake.set()

    def __len__(self) -> int:
        return sum(len(members) for members in self._by_session.values())
