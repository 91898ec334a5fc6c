"""Closing live connections from a process that holds none (the command line), through Redis."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lifeline.after_commit import AfterCommitRunner, DropConnections
from lifeline.config import Settings
from lifeline.realtime.broker import encode
from lifeline.realtime.redis_broker import CHANNEL, redis_client


def register(runner: AfterCommitRunner, settings: Settings) -> Callable[[], Awaitable[None]]:
    """Publish each committed DropConnections to the servers' Redis channel; → a closer."""
    assert settings.redis_url is not None
    client = redis_client(settings.redis_url, health_check_seconds=settings.heartbeat_seconds)

    async def publish(drop: DropConnections) -> None:
        await client.publish(CHANNEL, encode(drop, origin="command-line"))

    runner.register(DropConnections, publish)
    return client.aclose
