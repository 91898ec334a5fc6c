"""Sign-in throttling: failed attempts per account and per client address, with backoff.

A few failures are free (people mistype). Past that, each further failure locks the key for
twice as long as the last, up to a cap; a quiet window forgets the key. Keys are built from the
email as typed, whether or not such a user exists, so the answers never tell an attacker which
emails are real. Process memory by default; Redis when configured, so several server processes
share the counts.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThrottlePolicy:
    free_failures: int
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 15 * 60.0
    # Failures older than this (since the key's last failure) are forgotten.
    window_seconds: float = 15 * 60.0

    def lock_seconds(self, failures: int) -> float:
        """How long the key is locked after its ``failures``-th failure."""
        over = failures - self.free_failures
        if over <= 0:
            return 0.0
        return min(self.base_delay_seconds * float(2 ** (over - 1)), self.max_delay_seconds)


ACCOUNT_POLICY = ThrottlePolicy(free_failures=5)
# Offices and VPNs share addresses: the per-address allowance is larger.
ADDRESS_POLICY = ThrottlePolicy(free_failures=30)


def account_key(email: str) -> str:
    return "account:" + email.strip().lower()[:320]


def address_key(address: str) -> str:
    return "address:" + address


def device_key(device: str) -> str:
    return "device:" + device[:64]


class AttemptStore(Protocol):
    async def locked_for(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 when it may now)."""
        ...

    async def failed(self, key: str, policy: ThrottlePolicy) -> float:
        """Count a failure; returns the lock it earned, in seconds."""
        ...

    async def forget(self, key: str) -> None: ...

    async def close(self) -> None: ...


@dataclass
class _Entry:
    failures: int
    last_failure: float
    locked_until: float
    window: float


class MemoryAttempts:
    """One process's counts; expired keys are swept as the table grows."""

    SWEEP_AT = 10_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}

    def _live(self, key: str, now: float) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and now - entry.last_failure > max(
            entry.window, entry.locked_until - entry.last_failure
        ):
            del self._entries[key]
            return None
        return entry

    async def locked_for(self, key: str) -> float:
        now = self._clock()
        entry = self._live(key, now)
        return max(0.0, entry.locked_until - now) if entry else 0.0

    async def failed(self, key: str, policy: ThrottlePolicy) -> float:
        now = self._clock()
        if len(self._entries) >= self.SWEEP_AT:
            for stale in list(self._entries):
                self._live(stale, now)
        entry = self._live(key, now)
        failures = entry.failures + 1 if entry else 1
        lock = policy.lock_seconds(failures)
        self._entries[key] = _Entry(failures, now, now + lock, policy.window_seconds)
        return lock

    async def forget(self, key: str) -> None:
        self._entries.pop(key, None)

    async def close(self) -> None:
        self._entries.clear()


# Count, lock and expire in one step, so concurrent processes can't lose a failure.
_FAILED_SCRIPT = """
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
local free = tonumber(ARGV[1])
local base = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local window = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local lock = 0
if failures > free then
  lock = math.min(base * 2 ^ (failures - free - 1), cap)
end
redis.call('HSET', KEYS[1], 'locked_until', tostring(now + lock))
redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(window, lock) * 1000))
return tostring(lock)
"""


class RedisAttempts:
    """Counts shared by every server process through Redis (wall-clock based).

    While Redis is unreachable the counts fall back to this process's memory: sign-in keeps
    working and stays throttled, only per process.
    """

    PREFIX = "lifeline:login:"

    def __init__(self, redis: Redis, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._clock = clock
        self._failed = redis.register_script(_FAILED_SCRIPT)
        self._fallback = MemoryAttempts()

    @classmethod
    def from_url(cls, url: str) -> RedisAttempts:
        return cls(Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2))

    async def locked_for(self, key: str) -> float:
        try:
            raw = await self._redis.hget(self.PREFIX + key, "locked_until")
        except (RedisError, OSError) as exc:
            log.warning("sign-in throttle: Redis unavailable (%s); counting in memory", exc)
            return await self._fallback.locked_for(key)
        local = await self._fallback.locked_for(key)
        if raw is None:
            return local
        return max(local, float(raw) - self._clock())

    async def failed(self, key: str, policy: ThrottlePolicy) -> float:
        try:
            raw = await self._failed(
                keys=[self.PREFIX + key],
                args=[
                    policy.free_failures,
                    policy.base_delay_seconds,
                    policy.max_delay_seconds,
                    policy.window_seconds,
                    self._clock(),
                ],
            )
        except (RedisError, OSError) as exc:
            log.warning("sign-in throttle: Redis unavailable (%s); counting in memory", exc)
            return await self._fallback.failed(key, policy)
        return float(raw)

    async def forget(self, key: str) -> None:
        await self._fallback.forget(key)
        try:
            await self._redis.delete(self.PREFIX + key)
        except (RedisError, OSError) as exc:
            log.warning("sign-in throttle: Redis unavailable (%s)", exc)

    async def close(self) -> None:
        await self._redis.aclose()


@dataclass
class LoginThrottle:
    """Failures count per account and per address; a browser that signed in to the account
    before (its device cookie, as OWASP recommends) counts on its own instead, so someone
    guessing from elsewhere, or many people behind one address, can't lock its owner out."""

    store: AttemptStore
    account_policy: ThrottlePolicy = ACCOUNT_POLICY
    address_policy: ThrottlePolicy = ADDRESS_POLICY

    def _keys(
        self, email: str, address: str, device: str | None
    ) -> list[tuple[str, ThrottlePolicy]]:
        if device is not None:
            return [(device_key(device), self.account_policy)]
        return [
            (account_key(email), self.account_policy),
            (address_key(address), self.address_policy),
        ]

    async def retry_after(self, *, email: str, address: str, device: str | None = None) -> int:
        """Whole seconds before this email from this address may try again (0: go ahead)."""
        wait = 0.0
        for key, _policy in self._keys(email, address, device):
            wait = max(wait, await self.store.locked_for(key))
        return math.ceil(wait)

    async def failed(self, *, email: str, address: str, device: str | None = None) -> int:
        wait = 0.0
        for key, policy in self._keys(email, address, device):
            wait = max(wait, await self.store.failed(key, policy))
        return math.ceil(wait)

    async def succeeded(self, *, email: str, device: str | None = None) -> None:
        # Only the account's count resets: one good login must not unlock a guessing address.
        await self.store.forget(account_key(email))
        if device is not None:
            await self.store.forget(device_key(device))
