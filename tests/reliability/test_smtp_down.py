"""The SMTP server is down for a while under load, then comes up: every email arrives, once.

Escalations keep being created and picked up while every send fails (connection refused) and
is retried with backoff; nothing on the request path notices. Once retries have really failed
more than once, a real aiosmtpd starts on the same port; every email row ends sent and every
recipient got each Message-ID exactly once. The outage lasts LIFELINE_TEST_SMTP_DOWN_SECONDS
(3 by default; the issue's "a minute" works too, only slower). On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from lifeline.db import create_engine, create_sessionmaker
from lifeline.notifications.models import Channel, Delivery, DeliveryStatus
from tests.reliability import invariants
from tests.reliability.conftest import FAST_RETRIES, MAX_ATTEMPTS, make_team, wait_until
from tests.reliability.load import LoadRecord, escalation_loop
from tests.support.live import live_server
from tests.support.smtp import closed_port, smtp_recorder

pytestmark = pytest.mark.slow

SMTP_DOWN_SECONDS = float(os.environ.get("LIFELINE_TEST_SMTP_DOWN_SECONDS", "3"))


async def _email_rows(database_url: str) -> list[Delivery]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            return list(await db.scalars(select(Delivery).where(Delivery.channel == Channel.EMAIL)))
    finally:
        await engine.dispose()


async def test_smtp_down_for_a_while_then_every_email_arrives_once(
    database_url: str, tmp_path: Path
) -> None:
    team = await make_team(database_url, junior="engineer", a="admin", b="engineer")
    seniors = [team.owner, team["a"], team["b"]]
    port = closed_port()
    env = {**FAST_RETRIES, "LIFELINE_SMTP_HOST": "127.0.0.1", "LIFELINE_SMTP_PORT": str(port)}
    record = LoadRecord()
    with live_server(database_url, tmp_path, **env) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            stop = asyncio.Event()
            load = asyncio.create_task(
                escalation_loop(
                    client,
                    record,
                    junior=team["junior"],
                    seniors=seniors,
                    stop=stop,
                    give_up_at=time.monotonic() + 90 + SMTP_DOWN_SECONDS,
                )
            )
            try:
                down_since = time.monotonic()
                await wait_until("load is flowing", lambda: len(record.claims) >= 3)
                retried: list[Delivery] = []
                deadline = time.monotonic() + 60
                while not retried:  # sends really fail, and are really retried
                    assert time.monotonic() < deadline, "no email was retried"
                    rows = await _email_rows(database_url)
                    retried = [r for r in rows if r.attempts >= 2 and r.last_error]
                    await asyncio.sleep(0.1)
                assert all(r.status == DeliveryStatus.PENDING for r in rows)
                await asyncio.sleep(max(0.0, SMTP_DOWN_SECONDS - (time.monotonic() - down_since)))
                with smtp_recorder(port) as smtp:
                    after = len(record.claims)
                    await wait_until("races run with SMTP up", lambda: len(record.claims) > after)
                    stop.set()
                    await load
                    await invariants.wait_settled(database_url)
                    received = smtp.messages
            finally:
                stop.set()
                await load

    assert record.failures() == [] and record.unexpected() == [], record.calls
    rows = await _email_rows(database_url)
    assert {r.status for r in rows} == {DeliveryStatus.SENT}
    assert {r.id for r in retried} <= {r.id for r in rows if r.attempts >= 2}
    found = await invariants.check(
        database_url, record=record, received=received, max_attempts=MAX_ATTEMPTS
    )
    assert found.violations == [], found.violations
    assert found.emails_received == len(rows) and found.resends == 0
