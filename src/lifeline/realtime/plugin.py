"""Start-up of the real-time layer: broker chosen by settings, hub, presence, intent handlers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from lifeline.after_commit import DropConnections, PublishEvent
from lifeline.context import AppContext
from lifeline.db import new_id
from lifeline.realtime.broker import Broker, DropNotice, EventNotice, MemoryBroker
from lifeline.realtime.fast_path import WebSocketFastPath
from lifeline.realtime.hub import Hub
from lifeline.realtime.presence import RedisPresence
from lifeline.realtime.redis_broker import RedisBroker, redis_client
from lifeline.realtime.router import WEBSOCKET_PATH, websocket_stream


async def realtime_plugin(app: FastAPI, ctx: AppContext) -> Callable[[], Awaitable[None]]:
    """Registers ``hub``, ``broker`` and ``presence`` (``await is_online(user_id)``) services."""
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
    ctx.services.update(hub=hub, broker=broker, presence=hub.presence)

    async def publish_event(intent: PublishEvent) -> None:
        await broker.publish(
            EventNotice(
                account_id=intent.account_id, audience=intent.audience, message=intent.message
            )
        )

    async def drop_connections(intent: DropConnections) -> None:
        await broker.publish(
            DropNotice(
                user_id=intent.user_id,
                token_id=intent.token_id,
                web_session_id=intent.web_session_id,
            )
        )

    ctx.after_commit.register(PublishEvent, publish_event)
    ctx.after_commit.register(DropConnections, drop_connections)
    # Not in `lifeline worker`, which has no app: it runs this plugin for the broker and presence.
    if isinstance(app, FastAPI):
        # Built here if the server hasn't yet (tests drive the lifespan directly); Starlette only
        # builds it when it is missing, so this one is what every connection goes through.
        stack = app.middleware_stack or app.build_middleware_stack()
        app.middleware_stack = WebSocketFastPath(
            stack, path=WEBSOCKET_PATH, endpoint=websocket_stream
        )
    await broker.start()
    await hub.presence.refresh()
    await hub.start()

    async def close() -> None:
        await hub.close()
        await hub.presence.close()
        await broker.close()

    return close
