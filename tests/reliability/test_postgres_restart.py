"""PostgreSQL goes away under load and comes back: requests fail cleanly, the service recovers.

A private cluster (never the shared one) serves a live ``lifeline serve``; three clients keep
creating sessions, escalating them and racing to pick them up, retrying creations with their
Idempotency-Key. The cluster is stopped mid-load and started again once failures were seen.
Every request gets an answer (a 5xx while the database is gone, never a hang or a dropped
connection), the server recovers without a restart, and the invariants hold.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from lifeline import migrate
from tests.reliability import invariants
from tests.reliability.conftest import FAST_RETRIES, MAX_ATTEMPTS, make_team, wait_until
from tests.reliability.load import LoadRecord, escalation_loop
from tests.reliability.services import private_postgres
from tests.support.factories import escalate, new_session
from tests.support.live import live_server
from tests.support.smtp import smtp_recorder

pytestmark = pytest.mark.slow


async def test_postgres_restarted_mid_load(tmp_path: Path) -> None:
    with private_postgres() as cluster, smtp_recorder() as smtp:
        await asyncio.to_thread(migrate.upgrade, cluster.url)
        team = await make_team(cluster.url, junior="engineer", a="admin", b="engineer")
        seniors = [team.owner, team["a"], team["b"]]
        env = {
            **FAST_RETRIES,
            "LIFELINE_SMTP_HOST": smtp.host,
            "LIFELINE_SMTP_PORT": str(smtp.port),
        }
        record = LoadRecord()
        with live_server(cluster.url, tmp_path, **env) as base:
            async with httpx.AsyncClient(base_url=base) as client:
                stop = asyncio.Event()
                give_up_at = time.monotonic() + 90
                loops = [
                    asyncio.create_task(
                        escalation_loop(
                            client,
                            record,
                            junior=team["junior"],
                            seniors=seniors,
                            stop=stop,
                            give_up_at=give_up_at,
                        )
                    )
                    for _ in range(3)
                ]
                try:
                    await wait_until("load is flowing", lambda: len(record.claims) >= 5)
                    await asyncio.to_thread(cluster.stop)
                    await wait_until("requests fail", lambda: len(record.failures()) >= 10)
                    during = await client.get("/readyz")
                    me = await client.get("/api/v1/me", headers=team["junior"].headers)
                    await asyncio.to_thread(cluster.start)
                    created_before = len(record.claims)
                    await wait_until(
                        "the service recovers by itself",
                        lambda: len(record.claims) >= created_before + 5,
                    )
                finally:
                    stop.set()
                    await asyncio.gather(*loops)
                assert (await client.get("/readyz")).status_code == 200
            await invariants.wait_settled(cluster.url)
        log = (tmp_path / "server.log").read_text()

        assert during.status_code == 503
        # An answer to retry on a connection that stays open, not a crash.
        assert me.status_code == 503 and me.headers["Retry-After"] == "1"
        assert me.json() == {"detail": "Temporarily unavailable; try again"}
        assert record.hung() == [], "requests hung while the database was down"
        assert record.unexpected() == [], record.unexpected()
        failures = record.failures()
        assert failures and {c.status for c in failures} == {503}, (failures, log[-3000:])
        found = await invariants.check(
            cluster.url, record=record, received=smtp.messages, max_attempts=MAX_ATTEMPTS
        )
        assert found.violations == [], found.violations
        assert found.handoffs == len(record.handoffs) >= 10
        assert found.deliveries["sent"] > 0


async def test_an_email_accepted_while_the_database_is_down_is_recorded_not_resent(
    tmp_path: Path,
) -> None:
    """SMTP accepts a message while PostgreSQL is stopped: the outcome waits for the database
    (within the lease) instead of being dropped, so the email is not sent a second time."""
    with private_postgres() as cluster, smtp_recorder() as smtp:
        await asyncio.to_thread(migrate.upgrade, cluster.url)
        team = await make_team(cluster.url, junior="engineer", senior="admin")
        senior = team["senior"]
        smtp.hold_for(senior.email)
        env = {
            **FAST_RETRIES,
            "LIFELINE_SMTP_HOST": smtp.host,
            "LIFELINE_SMTP_PORT": str(smtp.port),
        }
        with live_server(cluster.url, tmp_path, **env) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                session = await new_session(client, team["junior"])
                handoff = await escalate(client, team["junior"], session["id"])
                await wait_until(
                    "the email is in flight", lambda: smtp.started_for(senior.email) == 1
                )
                # Everything else of the wave is recorded; only the held email is outstanding.
                deadline = time.monotonic() + 30
                while await invariants.pending(cluster.url) != {(senior.id, "email")}:
                    assert time.monotonic() < deadline, await invariants.pending(cluster.url)
                    await asyncio.sleep(0.05)
                await asyncio.to_thread(cluster.stop)
                smtp.release()  # SMTP accepts it while nothing can be written
                await wait_until("SMTP accepted it", lambda: len(smtp.to(senior.email)) == 1)
                log = tmp_path / "server.log"
                await wait_until(
                    "the outcome write failed at least once",
                    lambda: (
                        "record 1 delivery outcomes" in log.read_text()
                        or "recording 1 delivery outcomes" in log.read_text()
                    ),
                )
                await asyncio.to_thread(cluster.start)
                await invariants.wait_settled(cluster.url)
        found = await invariants.check(
            cluster.url, received=smtp.messages, max_attempts=MAX_ATTEMPTS
        )
    assert found.violations == [], found.violations
    assert len(smtp.to(senior.email)) == 1
    assert found.deliveries["sent"] >= 2 and handoff["id"]
