"""Long-polls waiting for news about one session (an agent's wait), woken by its events.

A waiter holds no connection and no database session while it waits: a :class:`Watch` that the
hub hands each event about the session as it reaches this process, from this process or another
one through the broker. The events themselves travel with the wake, so a waiter can often answer
from them without reading the database again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lifeline.after_commit import PublishEvent


class Watch:
    """What woke a waiter since it last looked: the events, or ``None`` for "look again".

    A flag and a future made only while someone sleeps on it, not an ``asyncio.Event``: a
    thousand agents' waits each hold one (an event carries a deque of waiters, ~0.8 KiB)."""

    __slots__ = ("_news", "_sleeper", "_woken")

    def __init__(self) -> None:
        self._news: list[dict[str, Any]] | None = []
        self._woken = False
        self._sleeper: asyncio.Future[None] | None = None

    async def wait(self) -> None:
        """Until something arrives (at once if something already did since the last take)."""
        if self._woken:
            return
        self._sleeper = asyncio.get_running_loop().create_future()
        try:
            await self._sleeper
        finally:
            self._sleeper = None

    def take(self) -> list[dict[str, Any]] | None:
        """The events since the last take, or ``None`` when some may have been missed."""
        news, self._news = self._news, []
        self._woken = False
        return news

    def add(self, message: dict[str, Any]) -> None:
        if self._news is not None:
            self._news.append(message)
        self._wake()

    def lost(self) -> None:
        self._news = None
        self._wake()

    def _wake(self) -> None:
        self._woken = True
        if self._sleeper is not None and not self._sleeper.done():
            self._sleeper.set_result(None)


class Waiters:
    def __init__(self) -> None:
        self._by_session: dict[str, set[Watch]] = {}

    @contextmanager
    def watch(self, session_id: str) -> Iterator[Watch]:
        """Collects what happens to ``session_id`` while the block runs."""
        watch = Watch()
        members = self._by_session.setdefault(session_id, set())
        members.add(watch)
        try:
            yield watch
        finally:
            members.discard(watch)
            if not members:
                self._by_session.pop(session_id, None)

    def notify(self, notice: PublishEvent) -> bool:
        """Hand the event to whoever waits on its session; → whether anyone did."""
        data = notice.message.get("data")
        session_id = data.get("session_id") if isinstance(data, dict) else None
        if session_id is None:
            return False
        members = self._by_session.get(session_id)
        if not members:
            return False
        for watch in tuple(members):
            watch.add(notice.message)
        return True

    def wake_all(self) -> None:
        """Events may have been missed (the broker was away): everyone looks again."""
        for members in tuple(self._by_session.values()):
            for watch in tuple(members):
                watch.lost()

    def __len__(self) -> int:
        return sum(len(members) for members in self._by_session.values())
