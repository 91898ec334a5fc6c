"""``lifeline worker`` SIGKILLed mid-sweep, twice, with a hundred emails to send.

The outbox holds the waves of twenty escalations that no server dispatched (as if the server
died right after committing them). A worker starts sending through a slow SMTP server and is
killed outright while sends are in flight; a second one takes over once the dead one's leases
expire and is killed too; a third finishes. Every email arrives; a recipient gets a message twice
only if it was in flight at a kill (SMTP accepted it, the row never said so), and then with the
same Message-ID; nobody else gets anything twice. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from lifeline.accounts.models import User
from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.schemas import MessageCreate
from lifeline.db import create_engine, create_sessionmaker, unit_of_work, utcnow
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Intent
from lifeline.notifications import outbox
from lifeline.notifications.models import Channel, Delivery, DeliveryStatus
from tests.reliability import invariants
from tests.reliability.conftest import FAST_RETRIES, MAX_ATTEMPTS, make_team
from tests.support.factories import Person
from tests.support.live import server_env
from tests.support.smtp import SmtpRecorder, smtp_recorder

pytestmark = pytest.mark.slow

ESCALATIONS = 20


async def _escalate_without_dispatch(database_url: str, junior: Person, count: int) -> None:
    """Commit escalations whose outbox rows nobody sends right away, all due at once."""
    engine = create_engine(database_url)
    maker = create_sessionmaker(engine)
    try:
        for n in range(count):
            async with unit_of_work(maker, AfterCommitRunner(TaskSet())) as db:
                actor = await db.get(User, junior.id)
                assert actor is not None
                session = await sessions.create_session(
                    db=db,
                    actor=actor,
                    title=f"undispatched {n}",
                    messages=[MessageCreate(content="x")],
                )
                await handoffs.create_handoff(
                    db=db,
                    actor=actor,
                    session_id=session.id,
                    intent=Intent.ESCALATE,
                    note="help",
                    # Room for every email of these escalations: none is capped.
                    email_cap=count * 10,
                )
            async with unit_of_work(maker, AfterCommitRunner(TaskSet())) as db:
                await outbox.expand_waves(db=db, email_cap=count * 10)
        async with maker() as db, db.begin():
            await db.execute(
                update(Delivery).values(next_attempt_at=utcnow() - timedelta(seconds=1))
            )
    finally:
        await engine.dispose()


async def _emails(database_url: str) -> list[Delivery]:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db:
            return list(await db.scalars(select(Delivery).where(Delivery.channel == Channel.EMAIL)))
    finally:
        await engine.dispose()


async def _wait_sent(database_url: str, at_least: int, *, within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while sum(r.status == DeliveryStatus.SENT for r in await _emails(database_url)) < at_least:
        assert asyncio.get_running_loop().time() < deadline, f"fewer than {at_least} sent"
        await asyncio.sleep(0.05)


async def _wait_mid_send(
    database_url: str, at_least: int, stale: set[str], *, within: float = 60
) -> set[str]:
    """Until ``at_least`` emails are sent and this worker holds leases of its own (tokens not
    in ``stale``, a killed worker's): a moment when a SIGKILL lands mid-send. A worker leases
    a whole batch at once and sends it concurrently, so waiting for a sent count alone can
    miss that moment on a slow machine. → every lease token held then."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        rows = await _emails(database_url)
        sent = sum(r.status == DeliveryStatus.SENT for r in rows)
        tokens = {
            r.lease_token
            for r in rows
            if r.status == DeliveryStatus.PENDING and r.lease_token is not None
        }
        if sent >= at_least and tokens - stale:
            return tokens
        assert asyncio.get_running_loop().time() < deadline, (
            f"the worker never held leases after {at_least} sent ({sent} sent)"
        )
        await asyncio.sleep(0.01)


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lifeline.cli", "worker"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _kill_mid_sweep(
    proc: subprocess.Popen[bytes], database_url: str, emails: dict[str, str], smtp: SmtpRecorder
) -> set[tuple[str, str]]:
    """SIGKILL; → the (recipient, Message-ID) of every email in flight at that moment."""
    os.kill(proc.pid, signal.SIGKILL)
    assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL
    in_flight = {
        (emails[r.recipient_user_id], r.message_id)
        for r in await _emails(database_url)
        if r.status == DeliveryStatus.PENDING and r.lease_token is not None
    }
    assert in_flight, "the worker was not in the middle of sending"
    return in_flight


async def test_worker_sigkilled_mid_sweep_twice(database_url: str, tmp_path: Path) -> None:
    team = await make_team(
        database_url, junior="engineer", a="admin", b="engineer", c="engineer", d="engineer"
    )
    seniors = [team.owner, team["a"], team["b"], team["c"], team["d"]]
    emails = {p.id: p.email for p in seniors}
    total = ESCALATIONS * len(seniors)
    await _escalate_without_dispatch(database_url, team["junior"], ESCALATIONS)
    log = tmp_path / "worker.log"
    allowed: set[tuple[str, str]] = set()
    with smtp_recorder() as smtp:
        for person in seniors:
            smtp.slow_for(person.email, 0.15)
        env = server_env(
            database_url,
            **{
                **FAST_RETRIES,
                "LIFELINE_SMTP_HOST": smtp.host,
                "LIFELINE_SMTP_PORT": str(smtp.port),
                "LIFELINE_SMTP_TIMEOUT_SECONDS": "1",
                "LIFELINE_DELIVERY_LEASE_SECONDS": "3",
                "LIFELINE_SWEEP_INTERVAL_SECONDS": "0.2",
                "LIFELINE_LOG_LEVEL": "INFO",
            },
        )
        stale: set[str] = set()
        # The second worker is killed as soon as it has sent one more and holds its own leases.
        for sent_before_kill in (total // 6, total // 6 + 1):
            proc = _worker(env, log)
            try:
                stale |= await _wait_mid_send(database_url, sent_before_kill, stale)
                allowed |= await _kill_mid_sweep(proc, database_url, emails, smtp)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        last = _worker(env, log)
        try:
            await _wait_sent(database_url, total)
        finally:
            last.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(last.wait, 30) == 0, log.read_text()[-3000:]
        received = smtp.messages

    rows = await _emails(database_url)
    assert len(rows) == total and {r.status for r in rows} == {DeliveryStatus.SENT}
    found = await invariants.check(
        database_url, received=received, allowed_resends=allowed, max_attempts=MAX_ATTEMPTS
    )
    assert found.violations == [], found.violations
    assert found.emails_received == total + found.resends
    assert log.read_text().count("worker started") == 3
