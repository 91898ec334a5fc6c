"""Presence: a user with at least one live connection, in any process, is online.

In one process the hub's own counts are the truth. With Redis, each process keeps a hash of its
users' connection counts under its own key with a TTL it refreshes every heartbeat, so a
process that dies without saying goodbye stops counting once the TTL runs out: no ghosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PROCESSES_KEY = "lifeline:presence:processes"


class LocalConnections(Protocol):
    """This process's live connections per user (the hub)."""

    def local_count(self, user_id: str) -> int: ...

    def local_counts(self) -> dict[str, int]: ...


def process_key(process_id: str) -> str:
    return f"lifeline:presence:process:{process_id}"


class Presence(Protocol):
    async def is_online(self, user_id: str) -> bool: ...

    async def connection_counts(self, user_ids: Iterable[str]) -> dict[str, int]: ...

    def changed(self, user_id: str) -> None: ...

    async def refresh(self) -> None: ...

    async def close(self) -> None: ...


class MemoryPresence:
    """Only this process's connections exist."""

    def __init__(self, local: LocalConnections) -> None:
        self.local = local

    async def is_online(self, user_id: str) -> bool:
        return self.local.local_count(user_id) > 0

    async def connection_counts(self, user_ids: Iterable[str]) -> dict[str, int]:
        return {uid: self.local.local_count(uid) for uid in user_ids}

    def changed(self, user_id: str) -> None:
        return None

    async def refresh(self) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisPresence:
    """Counts shared through Redis; every Redis failure falls back to this process's counts."""

    def __init__(
        self, local: LocalConnections, *, client: Redis, process_id: str, ttl_seconds: float
    ) -> None:
        self.local = local
        self.client = client
        self.process_id = process_id
        self.key = process_key(process_id)
        self.ttl_ms = max(1000, int(ttl_seconds * 1000))
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._failing = False

    async def is_online(self, user_id: str) -> bool:
        if self.local.local_count(user_id) > 0:
            return True
        return (await self.connection_counts([user_id]))[user_id] > 0

    async def connection_counts(self, user_ids: Iterable[str]) -> dict[str, int]:
        wanted = list(user_ids)
        totals = {uid: self.local.local_count(uid) for uid in wanted}
        if not wanted:
            return totals
        try:
            processes = [
                p.decode() if isinstance(p, bytes) else str(p)
                for p in await self.client.smembers(PROCESSES_KEY)
            ]
            others = [p for p in processes if p != self.process_id]
            if not others:
                return totals
            async with self.client.pipeline(transaction=False) as pipe:
                for process in others:
                    pipe.exists(process_key(process))
                    pipe.hmget(process_key(process), wanted)
                replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return totals
        gone = []
        for i, process in enumerate(others):
            exists, counts = replies[2 * i], replies[2 * i + 1]
            if not exists:
                gone.append(process)
                continue
            for uid, count in zip(wanted, counts, strict=True):
                totals[uid] += int(count or 0)
        if gone:
            with contextlib.suppress(RedisError, OSError):
                await self.client.srem(PROCESSES_KEY, *gone)
        return totals

    def changed(self, user_id: str) -> None:
        """A user's local count moved; one writer task sends the latest counts, in order."""
        self._dirty.add(user_id)
        self._wake.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_changes(), name="presence-writer")

    async def _write_changes(self) -> None:
        while self._dirty:
            self._wake.clear()
            batch, self._dirty = self._dirty, set()
            counts = {uid: self.local.local_count(uid) for uid in batch}
            try:
                async with self.client.pipeline(transaction=True) as pipe:
                    online = {uid: n for uid, n in counts.items() if n > 0}
                    offline = [uid for uid in batch if uid not in online]
                    if online:
                        pipe.hset(self.key, mapping=online)  # type: ignore[arg-type]
                    if offline:
                        pipe.hdel(self.key, *offline)
                    pipe.pexpire(self.key, self.ttl_ms)
                    pipe.sadd(PROCESSES_KEY, self.process_id)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                # The next heartbeat's refresh writes the whole state again.
                self._warn(exc)
                return
            self._ok()

    async def refresh(self) -> None:
        """Rewrite this process's counts and push its expiry out (every heartbeat)."""
        counts = {uid: n for uid, n in self.local.local_counts().items() if n > 0}
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.key)
                if counts:
                    pipe.hset(self.key, mapping=counts)  # type: ignore[arg-type]
                    pipe.pexpire(self.key, self.ttl_ms)
                pipe.sadd(PROCESSES_KEY, self.process_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._warn(exc)
            return
        self._ok()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.key)
                pipe.srem(PROCESSES_KEY, self.process_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            log.info("presence not withdrawn (%s); it expires on its own", exc)

    def _warn(self, exc: BaseException) -> None:
        if not self._failing:
            log.warning("presence via Redis unavailable (%s); using this process's view", exc)
        self._failing = True

    def _ok(self) -> None:
        if self._failing:
            log.info("presence via Redis restored")
        self._failing = False
