"""Fault tests: shared helpers for people, live servers and bounded waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from lifeline.db import create_engine, create_sessionmaker
from tests.support.factories import Factory, Team

# Retries come quickly in these tests: a short backoff, plenty of attempts, frequent sweeps.
FAST_RETRIES = {
    "LIFELINE_SWEEP_INTERVAL_SECONDS": "0.3",
    "LIFELINE_DELIVERY_BACKOFF_BASE_SECONDS": "0.2",
    "LIFELINE_DELIVERY_BACKOFF_MAX_SECONDS": "1",
    "LIFELINE_DELIVERY_MAX_ATTEMPTS": "100",
    "LIFELINE_SMTP_TIMEOUT_SECONDS": "2",
    "LIFELINE_DELIVERY_LEASE_SECONDS": "30",
    "LIFELINE_LOG_LEVEL": "WARNING",
}
MAX_ATTEMPTS = int(FAST_RETRIES["LIFELINE_DELIVERY_MAX_ATTEMPTS"])


async def make_team(database_url: str, **roles: str) -> Team:
    engine = create_engine(database_url)
    try:
        return await Factory(create_sessionmaker(engine)).team(**roles)
    finally:
        await engine.dispose()


async def wait_until(what: str, check: Callable[[], bool], *, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)
