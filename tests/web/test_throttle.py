"""The sign-in throttle's arithmetic, in memory and on a real Redis (and with Redis gone)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from lifeline.web.throttle import (
    AttemptStore,
    LoginThrottle,
    MemoryAttempts,
    RedisAttempts,
    ThrottlePolicy,
)
from tests.support.live import free_port


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


POLICY = ThrottlePolicy(
    free_failures=2, base_delay_seconds=1.0, max_delay_seconds=8.0, window_seconds=60.0
)


def test_the_lock_doubles_past_the_free_failures_up_to_the_cap() -> None:
    assert [POLICY.lock_seconds(n) for n in range(1, 9)] == [0, 0, 1, 2, 4, 8, 8, 8]


@pytest.fixture(params=["memory", "redis"])
async def store_and_clock(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[AttemptStore, FakeClock]]:
    clock = FakeClock()
    if request.param == "memory":
        yield MemoryAttempts(clock=clock), clock
        return
    url: str = request.getfixturevalue("redis_url")
    store = RedisAttempts(Redis.from_url(url), clock=clock)
    try:
        yield store, clock
    finally:
        await store.close()


async def test_failures_lock_then_expire_and_forget(
    store_and_clock: tuple[AttemptStore, FakeClock],
) -> None:
    store, clock = store_and_clock
    key = f"account:{uuid.uuid4().hex}@example.test"
    assert await store.locked_for(key) == 0
    assert [await store.failed(key, POLICY) for _ in range(4)] == [0, 0, 1, 2]
    assert await store.locked_for(key) == pytest.approx(2)
    clock.now += 1.5
    assert await store.locked_for(key) == pytest.approx(0.5)
    clock.now += 1
    assert await store.locked_for(key) == 0
    assert await store.failed(key, POLICY) == 4
    await store.forget(key)
    assert await store.locked_for(key) == 0
    assert await store.failed(key, POLICY) == 0


async def test_a_quiet_window_forgets_the_failures() -> None:
    clock = FakeClock()
    store = MemoryAttempts(clock=clock)
    for _ in range(3):
        await store.failed("k", POLICY)
    clock.now += 61
    assert await store.locked_for("k") == 0
    assert await store.failed("k", POLICY) == 0  # counting starts over


async def test_the_throttle_takes_the_longer_of_the_account_and_address_locks() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(
        MemoryAttempts(clock=clock),
        account_policy=ThrottlePolicy(free_failures=1, base_delay_seconds=10),
        address_policy=ThrottlePolicy(free_failures=3, base_delay_seconds=1),
    )
    assert await throttle.failed(email="a@x.test", address="10.0.0.1") == 0
    assert await throttle.failed(email="a@x.test", address="10.0.0.1") == 10
    assert await throttle.retry_after(email="A@X.test ", address="10.0.0.9") == 10
    assert await throttle.retry_after(email="b@x.test", address="10.0.0.1") == 0
    await throttle.failed(email="b@x.test", address="10.0.0.1")
    assert await throttle.retry_after(email="c@x.test", address="10.0.0.1") == 0
    await throttle.failed(email="c@x.test", address="10.0.0.1")
    assert await throttle.retry_after(email="d@x.test", address="10.0.0.1") == 1
    await throttle.succeeded(email="a@x.test")
    assert await throttle.retry_after(email="a@x.test", address="10.0.0.2") == 0


async def test_with_redis_unreachable_sign_in_is_still_throttled_in_memory() -> None:
    # Nothing listens on this port: every Redis call fails for real.
    store = RedisAttempts(
        Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    )
    try:
        assert [await store.failed("account:x", POLICY) for _ in range(3)] == [0, 0, 1]
        assert await store.locked_for("account:x") > 0
        await store.forget("account:x")
        assert await store.locked_for("account:x") == 0
    finally:
        await store.close()
