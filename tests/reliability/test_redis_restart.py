"""Redis is killed outright under load and started again: nothing on the request path notices,
and live connections get everything they missed once it is back.

Two ``lifeline serve`` processes share a private redis-server (never the shared one). Escalations
and Pick Up races go through server A; a viewer watches over a WebSocket held by server B, so
every event it sees crossed Redis or was caught up from the event log. Redis is SIGKILLed mid-load
and started again on the same port. Not one request fails; the watcher ends with every
escalation and every pick-up exactly once; the invariants hold. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx
import pytest

from tests.reliability import invariants
from tests.reliability.conftest import FAST_RETRIES, MAX_ATTEMPTS, make_team, wait_until
from tests.reliability.load import LoadRecord, Watcher, escalation_loop
from tests.reliability.services import private_redis
from tests.support.live import live_server
from tests.support.smtp import smtp_recorder

pytestmark = pytest.mark.slow


async def test_redis_killed_and_restarted(database_url: str, tmp_path: Path) -> None:
    team = await make_team(database_url, junior="engineer", a="admin", b="engineer", vic="viewer")
    seniors = [team.owner, team["a"], team["b"]]
    record = LoadRecord()
    watcher = Watcher()
    with private_redis() as redis, smtp_recorder() as smtp:
        env = {
            **FAST_RETRIES,
            "LIFELINE_REDIS_URL": redis.url,
            "LIFELINE_HEARTBEAT_SECONDS": "1",
            "LIFELINE_SMTP_HOST": smtp.host,
            "LIFELINE_SMTP_PORT": str(smtp.port),
        }
        with (
            live_server(database_url, tmp_path, name="a", **env) as a,
            live_server(database_url, tmp_path, name="b", **env) as b,
        ):
            watching = asyncio.create_task(watcher.run(b, team["vic"]))
            async with httpx.AsyncClient(base_url=a) as client:
                await wait_until("the watcher is connected", lambda: watcher.connections > 0)
                stop = asyncio.Event()
                load = asyncio.create_task(
                    escalation_loop(
                        client,
                        record,
                        junior=team["junior"],
                        seniors=seniors,
                        stop=stop,
                        give_up_at=time.monotonic() + 90,
                    )
                )
                try:
                    await wait_until("load is flowing", lambda: len(record.claims) >= 3)
                    await asyncio.to_thread(redis.kill)
                    during = len(record.claims)
                    await wait_until(
                        "races run without Redis", lambda: len(record.claims) >= during + 5
                    )
                    await asyncio.to_thread(redis.start)
                    after = len(record.claims)
                    await wait_until(
                        "races run with Redis back", lambda: len(record.claims) >= after + 3
                    )
                finally:
                    stop.set()
                    await load

                won = {
                    h for h, attempts in record.claims.items() if any(s == 200 for _, s in attempts)
                }
                await wait_until(
                    "the watcher has caught up with every escalation and pick-up",
                    lambda: (
                        set(watcher.seen("handoff.escalated")) >= set(record.handoffs)
                        and set(watcher.seen("handoff.claimed")) >= won
                    ),
                    within=60,
                )
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
            await invariants.wait_settled(database_url)

    assert record.failures() == [] and record.unexpected() == [], record.calls
    # Every escalation and every pick-up exactly once.
    ids = [int(e["id"]) for e in watcher.events]
    assert len(ids) == len(set(ids))
    assert set(watcher.seen("handoff.escalated").values()) == {1}
    assert set(watcher.seen("handoff.claimed").values()) == {1}
    assert set(watcher.seen("handoff.escalated")) == set(record.handoffs)
    found = await invariants.check(
        database_url, record=record, received=smtp.messages, max_attempts=MAX_ATTEMPTS
    )
    assert found.violations == [], found.violations
    # And in the order of the log, or a client that reconnects with the last id it got skips
    # what the catch-up had yet to send (the hub holds live events back until it is queued).
    assert ids == sorted(ids), f"catch-up after a Redis outage delivered out of order: {ids}"
