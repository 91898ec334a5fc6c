"""A server's background sweeps: the notification and integration outboxes' backstop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


async def every(seconds: float, sweep: Callable[[], Awaitable[None]], *, name: str) -> None:
    """Run ``sweep`` now and then every ``seconds``; a failed sweep is logged, never fatal."""
    while True:
        try:
            await sweep()
        except Exception:
            log.exception("%s failed", name)
        await asyncio.sleep(seconds)


def start(seconds: float, sweep: Callable[[], Awaitable[None]], *, name: str) -> asyncio.Task[None]:
    """:func:`every` as a task of this process; cancel it to stop."""
    return asyncio.get_running_loop().create_task(every(seconds, sweep, name=name), name=name)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
