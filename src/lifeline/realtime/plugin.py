"""Start-up of the real-time layer: broker chosen by settings, hub, presence, intent handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from lifeline.after_commit import DropConnections, PublishEvent
from lifeline.context import AppContext
from lifeline.db import new_id
from lifeline.realtime.broker import Broker, MemoryBroker
from lifeline.realtime.hub import Hub
from lifeline.realtime.presence import RedisPresence
from lifeline.realtime.redis_broker import RedisBroker, redis_client


async def realtime_plugin(_app: FastAPI, ctx: AppContext) -> Callable[[], Awaitable[None]]:
    """Sets the context's ``hub`` and ``presence``; the broker carries side effects to hubs."""
    settings = ctx.settings
    hub = Hub(sessionmaker=ctx.sessionmaker, heartbeat_seconds=settings.heartbeat_seconds)
    broker: Broker
    if settings.redis_url:
        process_id = new_id()
        client = redis_client(settings.redis_url, health_check_seconds=settings.heartbeat_seconds)
        broker = RedisBroker(hub, client=client, process_id=process_id)
        hub.presence = RedisPresence(
            hub,
            client=client,
            process_id=process_id,
            ttl_seconds=settings.presence_ttl_seconds,
        )
    else:
        broker = MemoryBroker(hub)
    ctx.hub, ctx.presence = hub, hub.presence

    # Both side effects go to every process's hub as they are.
    ctx.after_commit.register(PublishEvent, broker.publish)
    ctx.after_commit.register(DropConnections, broker.publish)
    await broker.start()
    await hub.presence.refresh()
    await hub.start()

    async def close() -> None:
        await hub.close()
        await hub.presence.close()
        await broker.close()

    return close
