"""What one process shares: settings, database, background tasks, side-effect handlers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.config import Settings
from lifeline.db import create_engine, create_sessionmaker


@dataclass
class AppContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    tasks: TaskSet
    after_commit: AfterCommitRunner
    # Filled in by the notification and real-time layers at start-up.
    services: dict[str, Any] = field(default_factory=dict)

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

    async def close(self) -> None:
        await self.tasks.drain(wait_seconds=10)
        await self.engine.dispose()
