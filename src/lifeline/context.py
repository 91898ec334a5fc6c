"""What one process shares: settings, database, background tasks, side-effect handlers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.config import Settings
from lifeline.db import (
    create_engine,
    create_read_engine,
    create_read_sessionmaker,
    create_sessionmaker,
)
from lifeline.handoffs.claim_gate import ClaimGate

if TYPE_CHECKING:
    from lifeline.integrations.relay import IntegrationRelay
    from lifeline.notifications.relay import Relay
    from lifeline.realtime.hub import Hub
    from lifeline.web.throttle import LoginThrottle

log = logging.getLogger(__name__)


class Presence(Protocol):
    async def is_online(self, user_id: str) -> bool: ...

    async def connection_counts(self, user_ids: Iterable[str]) -> dict[str, int]: ...


# Presence asked once for a whole batch of sends (``AppContext.presence_for``): user id → count.
_known_presence: ContextVar[Mapping[str, int] | None] = ContextVar(
    "lifeline_known_presence", default=None
)


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tasks: TaskSet
    after_commit: AfterCommitRunner
    # Lone reads outside a transaction (PostgreSQL only; None on SQLite): see db.py.
    read_engine: AsyncEngine | None = None
    reads: async_sessionmaker[AsyncSession] | None = None
    # Pick Up's bursts on one escalation make one attempt per process (handoffs.claim_gate).
    claims: ClaimGate = field(default_factory=ClaimGate)
    # Filled in at start-up by the layer that owns each; None where it isn't running.
    hub: Hub | None = None  # live connections of this process (realtime)
    presence: Presence | None = None  # who is connected, in any process (realtime)
    login_throttle: LoginThrottle | None = None  # sign-in attempts (web)
    relay: Relay | None = None  # the notification outbox's sender (notifications)
    integrations: IntegrationRelay | None = None  # webhooks' and Slack's sender (integrations)

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        engine = create_engine(settings.database_url)
        read_engine = create_read_engine(engine)
        tasks = TaskSet()
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            read_engine=read_engine,
            reads=create_read_sessionmaker(read_engine),
            tasks=tasks,
            after_commit=AfterCommitRunner(tasks),
        )

    @asynccontextmanager
    async def presence_for(self, user_ids: Iterable[str]) -> AsyncIterator[None]:
        """The sends made inside (and the tasks started there) see the presence of ``user_ids``
        as asked once, in one round trip, on entry; whoever isn't in that answer, or everyone if
        asking failed, is looked up on their own."""
        wanted = sorted(set(user_ids))
        counts: Mapping[str, int] | None = None
        if self.presence is not None and wanted:
            try:
                counts = await self.presence.connection_counts(wanted)
            except Exception:
                log.warning("batched presence lookup failed; asking per recipient", exc_info=True)
        token = _known_presence.set(counts)
        try:
            yield
        finally:
            _known_presence.reset(token)

    async def is_online(self, user_id: str) -> bool:
        """Whether the user has a live connection anywhere; without the real-time layer (or
        if presence fails) everyone counts as offline."""
        known = _known_presence.get()
        if known is not None and user_id in known:
            return known[user_id] > 0
        if self.presence is None:
            return False
        try:
            return bool(await self.presence.is_online(user_id))
        except Exception:
            log.warning("presence lookup failed; counting %s as offline", user_id, exc_info=True)
            return False

    async def close(self) -> None:
        await self.tasks.drain(wait_seconds=10)
        await self.engine.dispose()
