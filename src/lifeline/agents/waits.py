"""Bounded long-polls that wake on the event itself, with progress while they wait.

A wait subscribes to its session's events first, then reads the state, then sleeps until an
event about the session arrives (from any process, through the broker) or a progress tick is
due. A wake hands the check the events themselves, which often answer it without a read; the
tick re-reads the state once, which covers an event lost while the broker was away. Between
events nothing touches the database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from lifeline import metrics
from lifeline.realtime.waiters import Waiters

T = TypeVar("T")
# The events that woke a wait, or None: read the state afresh.
News = list[dict[str, Any]] | None

DEFAULT_TIMEOUT_SECONDS = 45.0
MIN_TIMEOUT_SECONDS = 1.0
MAX_TIMEOUT_SECONDS = 50.0
PROGRESS_EVERY_SECONDS = 10.0


def clamp_timeout(seconds: float | None) -> float:
    """Out-of-range timeouts are brought into 1–50 s, not refused: waiting again is always safe."""
    if seconds is None:
        return DEFAULT_TIMEOUT_SECONDS
    return min(MAX_TIMEOUT_SECONDS, max(MIN_TIMEOUT_SECONDS, float(seconds)))


async def wait_for(
    *,
    waiters: Waiters,
    session_id: str,
    seconds: float,
    check: Callable[[float, News], Awaitable[T | None]],
    progress: Callable[[float, float], Awaitable[None]],
    progress_every: float = PROGRESS_EVERY_SECONDS,
) -> tuple[T | None, float]:
    """``check(elapsed, news)`` until it returns something or ``seconds`` pass → (result, elapsed).

    ``news`` is the list of events about the session that woke the wait, or ``None`` when the
    state must be read afresh: the first look, every progress tick, and after the broker was
    away. ``progress(elapsed, seconds)`` is called every ``progress_every`` seconds of waiting.
    """
    started = time.monotonic()
    deadline = started + seconds
    next_progress = started + progress_every
    news: News = None
    with waiters.watch(session_id) as watch, metrics.agent_waits.track_inprogress():
        while True:
            result = await check(time.monotonic() - started, news)
            if result is not None:
                return result, time.monotonic() - started
            now = time.monotonic()
            if now >= deadline:
                return None, now - started
            try:
                # Not ``asyncio.wait_for``: it runs the wait in a task of its own, so a wake
                # would take two turns of the event loop, and the second one queues behind
                # whatever the same event set off (a push to every open socket of the team).
                async with asyncio.timeout(min(deadline, next_progress) - now):
                    await watch.wait()
                news = watch.take()
            except TimeoutError:
                now = time.monotonic()
                news = None
                if now >= next_progress and now < deadline:
                    next_progress = now + progress_every
                    await progress(now - started, seconds)
