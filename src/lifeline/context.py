"""What one process shares: settings, database, background tasks, side-effect handlers."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.config import Settings
from lifeline.db import create_engine, create_sessionmaker

if TYPE_CHECKING:
    from lifeline.integrations.relay import IntegrationRelay
    from lifeline.notifications.relay import Relay
    from lifeline.realtime.hub import Hub
    from lifeline.web.throttle import LoginThrottle

log = logging.getLogger(__name__)


class Presence(Protocol):
    async def is_online(self, user_id: str) -> bool: ...


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tasks: TaskSet
    after_commit: AfterCommitRunner
    # Filled in at start-up by the layer that owns each; None where it isn't running.
    hub: Hub | None = None  # live connections of this process (realtime)
    presence: Presence | None = None  # who is connected, in any process (realtime)
    login_throttle: LoginThrottle | None = None  # sign-in attempts (web)
    relay: Relay | None = None  # the notification outbox's sender (notifications)
    integrations: IntegrationRelay | None = None  # webhooks' and Slack's sender (integrations)

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        engine = create_engine(settings.database_url)
        tasks = TaskSet()
        return cls(
            settings=settings,
            engine=engine,
            sessionmaker=create_sessionmaker(engine),
            tasks=tasks,
            after_commit=AfterCommitRunner(tasks),
        )

    async def is_online(self, user_id: str) -> bool:
        """Whether the user has a live connection anywhere; without the real-time layer (or
        if presence fails) everyone counts as offline."""
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
