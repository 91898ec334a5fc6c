"""Intents recorded inside a transaction and run only after it commits.

Services never send anything themselves: they record what should happen once their writes are
durable (``record(session, PublishEvent(...))``). The unit of work hands the intents to an
:class:`AfterCommitRunner` after a successful commit and drops them on rollback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

_KEY = "lifeline.after_commit"


@dataclass(frozen=True)
class DispatchDeliveries:
    """Send these outbox rows now (the relay sweep covers them if this never runs)."""

    delivery_ids: tuple[str, ...]


@dataclass(frozen=True)
class DeliverToIntegrations:
    """Send these webhook and Slack outbox rows now (the integrations' sweep is the backstop)."""

    delivery_ids: tuple[str, ...]


@dataclass(frozen=True)
class PublishEvent:
    """Push this durable event (already in the event log) to live connections."""

    event_id: int
    account_id: str
    audience: str
    message: dict[str, Any]


@dataclass(frozen=True)
class DropConnections:
    """Close a user's live connections (all, or those of one token or web session), everywhere."""

    user_id: str
    token_id: str | None = None
    web_session_id: str | None = None


Intent = DispatchDeliveries | DeliverToIntegrations | PublishEvent | DropConnections
Handler = Callable[[Any], Awaitable[None]]


def record(session: AsyncSession, intent: Intent) -> None:
    session.info.setdefault(_KEY, []).append(intent)


def take(session: AsyncSession) -> list[Intent]:
    intents: list[Intent] = session.info.pop(_KEY, [])
    return intents


def discard(session: AsyncSession) -> None:
    session.info.pop(_KEY, None)


class TaskSet:
    """Background tasks the process owns: kept referenced, errors logged, drained on shutdown."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, wait_seconds: float | None = None) -> None:
        """Wait for every task spawned so far, and for those they spawn in turn."""
        while self._tasks:
            await asyncio.wait(set(self._tasks), timeout=wait_seconds)
            if wait_seconds is not None:
                break

    def __len__(self) -> int:
        return len(self._tasks)


class AfterCommitRunner:
    """Maps each kind of intent to the handler that carries it out, off the request path."""

    def __init__(self, tasks: TaskSet) -> None:
        self.tasks = tasks
        self._handlers: dict[type[Any], Handler] = {}

    def register(self, intent_type: type[Any], handler: Handler) -> None:
        self._handlers[intent_type] = handler

    def run(self, intents: list[Intent]) -> None:
        for intent in intents:
            handler = self._handlers.get(type(intent))
            if handler is None:
                log.debug("no handler for %s; the durable record covers it", type(intent).__name__)
                continue
            self.tasks.spawn(self._guarded(handler, intent), name=type(intent).__name__)

    @staticmethod
    async def _guarded(handler: Handler, intent: Intent) -> None:
        # Advisory side effects never raise into anything: the committed work stands.
        try:
            await handler(intent)
        except Exception:
            log.exception("after-commit %s failed", type(intent).__name__)
