"""Redis pub/sub broker: several server processes deliver to connections held by any of them.

Redis is advisory here. The committing request never waits on it (publishing runs after commit,
off the request path), local connections are served without it, a failed publish is kept and
retried, and when the subscription comes back the hub catches its connections up from the
durable event log, so an outage delays push but loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from lifeline.realtime.broker import Listener, Notice, decode, encode

log = logging.getLogger(__name__)

CHANNEL = "lifeline:realtime"


def redis_client(url: str, *, health_check_seconds: float) -> Redis:
    """A client that fails fast: reconnecting with backoff is the broker's job, not each call's."""
    client: Redis = Redis.from_url(
        url,
        socket_connect_timeout=2,
        socket_timeout=5,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=max(1, int(health_check_seconds)),
    )
    return client


class RedisBroker:
    def __init__(
        self,
        listener: Listener,
        *,
        client: Redis,
        process_id: str,
        channel: str = CHANNEL,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        poll_seconds: float = 1.0,
        pending_limit: int = 10_000,
    ) -> None:
        self.listener = listener
        self.client = client
        self.process_id = process_id
        self.channel = channel
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.poll_seconds = poll_seconds
        # Notices not yet accepted by Redis, oldest first; flushed when it answers again.
        self._pending: deque[str] = deque(maxlen=pending_limit)
        self._publish_lock = asyncio.Lock()
        self._publish_failing = False
        self._subscribed = asyncio.Event()
        self._gap = False
        self._task: asyncio.Task[None] | None = None
        self._resume_tasks: set[asyncio.Task[Any]] = set()

    @property
    def subscribed(self) -> bool:
        return self._subscribed.is_set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._subscribe_forever(), name="redis-broker")
        # Serve even if Redis is down at start-up; the subscriber keeps trying in the background.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=5)
        if not self.subscribed:
            log.warning("Redis is unreachable at start-up; live push crosses processes once it is")

    async def publish(self, notice: Notice) -> None:
        # This process's own connections never wait on Redis.
        self.listener.deliver(notice)
        self._pending.append(encode(notice, origin=self.process_id))
        await self._flush()

    async def _flush(self) -> None:
        async with self._publish_lock:
            while self._pending:
                try:
                    await self.client.publish(self.channel, self._pending[0])
                except (RedisError, OSError) as exc:
                    if not self._publish_failing:
                        log.warning(
                            "Redis publish failed (%s); %d notice(s) kept for retry",
                            exc,
                            len(self._pending),
                        )
                    self._publish_failing = True
                    return
                self._pending.popleft()
            if self._publish_failing:
                log.info("Redis publish works again")
            self._publish_failing = False

    async def _subscribe_forever(self) -> None:
        delay = self.backoff_initial
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                confirmations = 0
                while True:
                    message = await pubsub.get_message(timeout=self.poll_seconds)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        confirmations += 1
                        # A second confirmation means the client re-subscribed on its own
                        # after a dropped connection: messages may have been missed.
                        self._gap = self._gap or confirmations > 1
                        delay = self.backoff_initial
                        self._on_subscribed()
                    elif message["type"] == "message":
                        self._receive(message["data"])
            except Exception as exc:
                if self._subscribed.is_set() or not self._gap:
                    unexpected = not isinstance(exc, RedisError | OSError)
                    log.warning(
                        "Redis subscription lost (%s); reconnecting with backoff",
                        exc,
                        exc_info=unexpected,
                    )
                    self.listener.broker_lost()
                self._subscribed.clear()
                self._gap = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay * (1 + random.random() / 2))
            delay = min(delay * 2, self.backoff_max)

    def _on_subscribed(self) -> None:
        self._subscribed.set()
        if not self._gap:
            return
        # Anything published while we were away is in the event log: catch up from it.
        self._gap = False
        log.info("Redis subscription restored; catching connections up from the event log")
        # Before the next message is read: live events wait until the catch-up is queued.
        self.listener.broker_resuming()
        task = asyncio.create_task(self._resume(), name="redis-broker-resume")
        self._resume_tasks.add(task)
        task.add_done_callback(self._resume_tasks.discard)

    async def _resume(self) -> None:
        try:
            await self._flush()
        except Exception:
            log.exception("re-publishing after a Redis outage failed")
        # Always, once resuming began: it also lets go of the live events held meanwhile.
        try:
            await self.listener.broker_resumed()
        except Exception:
            log.exception("catching up after a Redis outage failed")

    def _receive(self, raw: bytes | str) -> None:
        try:
            origin, notice = decode(raw)
        except ValueError as exc:
            log.warning("ignoring a malformed broker message: %s", exc)
            return
        if origin != self.process_id:
            self.listener.deliver(notice)

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._resume_tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()
