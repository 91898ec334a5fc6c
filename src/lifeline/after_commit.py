"""Side effects recorded inside a transaction and run only after it commits.

Services never send anything themselves: they record what should happen once their writes are
durable (``record(session, PublishEvent(...))``). The unit of work hands the side effects to an
:class:`AfterCommitRunner` after a successful commit and drops them on rollback.

Each side effect has one type, defined here (the lowest module that records it); its handler
registers for it from above (``realtime``, ``notifications``, ``integrations``) and carries the
same object on: the real-time broker sends a :class:`PublishEvent` between processes as is.
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
class ExpandWaves:
    """Write these waves' delivery rows now, then send them (the relay sweep covers them if
    this never runs)."""

    wave_ids: tuple[str, ...]


@dataclass(frozen=True)
class DeliverToIntegrations:
    """Send these webhook and Slack outbox rows now (the integrations' sweep is the backstop)."""

    delivery_ids: tuple[str, ...]


@dataclass(frozen=True)
class PublishEvent:
    """Push this durable event (already in the event log) to live connections: the wire
    message and who may see it."""

    account_id: str
    audience: str
    message: dict[str, Any]

    @property
    def event_id(self) -> int:
        return int(self.message["id"])


@dataclass(frozen=True)
class DropConnections:
    """Close a user's live connections (all, or those of one token or web session), everywhere."""

    user_id: str
    token_id: str | None = None
    web_session_id: str | None = None


SideEffect = (
    DispatchDeliveries | ExpandWaves | DeliverToIntegrations | PublishEvent | DropConnections
)
Handler = Callable[[Any], Awaitable[None]]


def record(session: AsyncSession, effect: SideEffect) -> None:
    session.info.setdefault(_KEY, []).append(effect)


def take(session: AsyncSession) -> list[SideEffect]:
    effects: list[SideEffect] = session.info.pop(_KEY, [])
    return effects


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
    """Maps each kind of side effect to the handler that carries it out, off the request path."""

    def __init__(self, tasks: TaskSet) -> None:
        self.tasks = tasks
        self._handlers: dict[type[Any], Handler] = {}

    def register(self, effect_type: type[Any], handler: Handler) -> None:
        self._handlers[effect_type] = handler

    def leave(self, effect_type: type[Any], *, covered_by: str) -> None:
        """This process deliberately doesn't carry ``effect_type`` out: ``covered_by`` does."""

        async def covered(_effect: Any) -> None:
            log.debug("%s left to %s", effect_type.__name__, covered_by)

        self._handlers[effect_type] = covered

    def run(self, effects: list[SideEffect]) -> None:
        for effect in effects:
            handler = self._handlers.get(type(effect))
            if handler is None:
                # Outbox rows are swept later, but a live push or a dropped connection is not:
                # a process that records one without a handler is misconfigured.
                log.warning(
                    "no handler for after-commit %s: not carried out", type(effect).__name__
                )
                continue
            self.tasks.spawn(self._guarded(handler, effect), name=type(effect).__name__)

    @staticmethod
    async def _guarded(handler: Handler, effect: SideEffect) -> None:
        # Advisory side effects never raise into anything: the committed work stands.
        try:
            await handler(effect)
        except Exception:
            log.exception("after-commit %s failed", type(effect).__name__)
