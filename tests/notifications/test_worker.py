"""``lifeline worker`` as a real process: sweeps deliver what no server dispatched, and a worker
killed with SIGKILL mid-sweep loses nothing and duplicates nothing.

The ``smtp`` and ``settings`` fixtures are this directory's (``conftest.py``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from lifeline.context import AppContext
from lifeline.db import create_engine, create_sessionmaker, utcnow
from lifeline.handoffs.models import Handoff
from lifeline.idempotency import KEY_LIFETIME, IdempotencyRecord
from lifeline.notifications.models import Delivery
from lifeline.policies.models import EscalationSchedule
from tests.notifications.conftest import (
    deliveries,
    escalate_without_dispatch,
    make_due,
)
from tests.realtime.clients import sse_stream, wait_connections
from tests.support.factories import Factory, escalate, new_session
from tests.support.live import live_server, server_env
from tests.support.smtp import SmtpRecorder, smtp_recorder


def _worker_env(database_url: str, smtp: SmtpRecorder, **extra: str) -> dict[str, str]:
    return server_env(
        database_url,
        LIFELINE_SMTP_HOST=smtp.host,
        LIFELINE_SMTP_PORT=str(smtp.port),
        LIFELINE_BASE_URL="http://testserver",
        LIFELINE_SWEEP_INTERVAL_SECONDS="0.2",
        LIFELINE_DELIVERY_BACKOFF_BASE_SECONDS="0.2",
        **extra,
    )


def _worker(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "lifeline.cli", "worker", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def _wait_until(
    what: str, check: Callable[[], Awaitable[bool]], *, within: float = 60.0
) -> None:
    deadline = time.monotonic() + within
    while True:
        if await check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


async def _idempotency_keys(ctx: AppContext, user_id: str) -> tuple[str, str]:
    """An answer past its lifetime and a fresh one; → their ids."""
    expired = utcnow() - KEY_LIFETIME - timedelta(minutes=1)
    rows = [
        IdempotencyRecord(
            user_id=user_id,
            key=key,
            method="POST",
            path="/api/v1/ai-sessions",
            status_code=201,
            response_body={},
            created_at=created,
        )
        for key, created in (("old", expired), ("fresh", utcnow()))
    ]
    async with ctx.sessionmaker() as db, db.begin():
        db.add_all(rows)
    return rows[0].id, rows[1].id


async def test_worker_once_delivers_what_no_server_dispatched(
    client: httpx.AsyncClient,
    ctx: AppContext,
    factory: Factory,
    smtp: SmtpRecorder,
    database_url: str,
    tmp_path: Path,
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])
    handoff = await escalate_without_dispatch(ctx, team["junior"], session["id"])
    await make_due(ctx)
    old, fresh = await _idempotency_keys(ctx, team["junior"].id)

    log = tmp_path / "worker.log"
    proc = _worker(_worker_env(database_url, smtp), log, "--once")
    code = await asyncio.to_thread(proc.wait, 60)

    output = log.read_text()
    assert code == 0, output
    quiet = "steps=0, expired=0, claim_reminders=0, auto_released=0"
    assert f"sweep 1: {quiet}, claimed=4, sent=2, skipped=2" in output, output
    assert smtp.recipients() == sorted([team.owner.email, team["senior"].email])
    rows = await deliveries(ctx, handoff.id)
    assert {(r.channel, r.status) for r in rows} == {("email", "sent"), ("push", "skipped")}
    # The sweep forgets idempotency answers past their lifetime, and only those.
    assert "expired idempotency keys: 1" in output, output
    async with ctx.sessionmaker() as db:
        kept = set(await db.scalars(select(IdempotencyRecord.id)))
    assert fresh in kept and old not in kept


async def test_worker_sigkilled_mid_sweep_loses_nothing_and_duplicates_nothing(
    client: httpx.AsyncClient,
    ctx: AppContext,
    factory: Factory,
    smtp: SmtpRecorder,
    database_url: str,
    tmp_path: Path,
) -> None:
    team = await factory.team(
        junior="engineer", a="admin", b="engineer", c="engineer", held1="engineer", held2="admin"
    )
    held = {team["held1"].email, team["held2"].email}
    for address in held:
        smtp.hold_for(address)  # their SMTP transaction is in flight when the worker dies
    session = await new_session(client, team["junior"])
    handoff = await escalate_without_dispatch(ctx, team["junior"], session["id"])
    await make_due(ctx)
    env = _worker_env(
        database_url,
        smtp,
        LIFELINE_SMTP_TIMEOUT_SECONDS="5",
        LIFELINE_DELIVERY_LEASE_SECONDS="11",
    )
    log = tmp_path / "worker.log"

    async def emails() -> list[Delivery]:
        return [r for r in await deliveries(ctx, handoff.id) if r.channel == "email"]

    async def killable() -> bool:
        rows = await emails()
        fast_sent = sum(r.status == "sent" for r in rows) == 4
        return fast_sent and all(smtp.started_for(a) == 1 for a in held)

    first = _worker(env, log)
    try:
        await _wait_until("the fast rows are sent and the held ones in flight", killable)
        os.kill(first.pid, signal.SIGKILL)
        assert await asyncio.to_thread(first.wait, 10) == -signal.SIGKILL
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

    at_kill = {r.recipient_user_id: r for r in await emails()}
    in_flight = [r for r in at_kill.values() if r.status == "pending"]
    assert len(in_flight) == 2 and all(r.lease_token for r in in_flight)
    sent_before = {r.recipient_user_id for r in at_kill.values() if r.status == "sent"}
    smtp.release()  # the server finishes the dead worker's transactions (the crash window)

    second = _worker(env, log)
    try:

        async def all_settled() -> bool:
            return all(r.status == "sent" for r in await emails())

        await _wait_until("another worker takes over the expired leases", all_settled)
    finally:
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 30) == 0, log.read_text()

    rows = await deliveries(ctx, handoff.id)
    assert {(r.channel, r.status) for r in rows} == {("email", "sent"), ("push", "skipped")}
    recipients = [team.owner, team["a"], team["b"], team["c"], team["held1"], team["held2"]]
    for person in recipients:
        mail = smtp.to(person.email)
        assert mail, f"{person.email} got nothing: lost"
        # One message, or a resend of it with the very same Message-ID.
        assert len({m.message_id for m in mail}) == 1
        if person.id in sent_before:
            assert len(mail) == 1, f"{person.email} was emailed twice"
    assert sent_before == {team.owner.id, team["a"].id, team["b"].id, team["c"].id}
    assert "worker stopped after" in log.read_text()


@pytest.mark.redis
@pytest.mark.parametrize("backend", ["postgres"])
async def test_worker_reminder_reaches_live_connections_through_redis(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    """A worker beside the servers pushes its reminder wave live and sees their presence."""
    engine = create_engine(database_url)
    try:
        factory = Factory(create_sessionmaker(engine))
        team = await factory.team(junior="engineer", senior="admin", peer="engineer")
        with smtp_recorder() as smtp:
            shared = {
                "LIFELINE_REDIS_URL": redis_url,
                "LIFELINE_SMTP_HOST": smtp.host,
                "LIFELINE_SMTP_PORT": str(smtp.port),
                "LIFELINE_HEARTBEAT_SECONDS": "0.5",
                # The server sends no reminders itself here: only the worker does.
                "LIFELINE_SWEEP_INTERVAL_SECONDS": "3600",
            }
            with live_server(database_url, tmp_path, **shared) as base:
                async with httpx.AsyncClient(base_url=base, timeout=15) as client:
                    session = await new_session(client, team["junior"])
                    async with sse_stream(client, team["senior"]) as stream:
                        await wait_connections(client, team["senior"], 1)
                        handoff = await escalate(client, team["junior"], session["id"])
                        await stream.next_of("handoff.escalated")
                        # Eleven minutes pass with nobody picking it up.
                        async with create_sessionmaker(engine)() as db, db.begin():
                            await db.execute(
                                update(Handoff)
                                .where(Handoff.id == handoff["id"])
                                .values(queued_at=utcnow() - timedelta(minutes=11))
                            )
                            await db.execute(
                                update(EscalationSchedule)
                                .where(EscalationSchedule.handoff_id == handoff["id"])
                                .values(next_step_at=utcnow() - timedelta(minutes=1))
                            )
                        env = server_env(database_url, LIFELINE_BASE_URL=base, **shared)
                        log = tmp_path / "worker.log"
                        proc = _worker(env, log, "--once")
                        code = await asyncio.to_thread(proc.wait, 60)
                        assert code == 0, log.read_text()
                        assert "steps=1," in log.read_text(), log.read_text()

                        reminder = await stream.next_of("handoff.reminder")
                        assert reminder["data"]["id"] == handoff["id"]

        async with create_sessionmaker(engine)() as db:
            rows = (
                await db.scalars(
                    select(Delivery).where(
                        Delivery.handoff_id == handoff["id"], Delivery.kind == "step"
                    )
                )
            ).all()
        push = {r.recipient_user_id: (r.status, r.last_error) for r in rows if r.channel == "push"}
        assert push == {
            team["senior"].id: ("sent", None),
            team["peer"].id: ("skipped", "offline: no live connection"),
            team.owner.id: ("skipped", "offline: no live connection"),
        }
        # Email goes to those the push didn't reach (offline_only, the default): the senior
        # watching the stream was told live and is not emailed as well.
        email = {
            r.recipient_user_id: (r.status, r.last_error) for r in rows if r.channel == "email"
        }
        assert email[team["senior"].id][0] == "skipped", email
        reminders = [m for m in smtp.messages if "Reminder" in m.message["Subject"]]
        assert sorted(r for m in reminders for r in m.rcpt_tos) == sorted(
            [team.owner.email, team["peer"].email]
        )
    finally:
        await engine.dispose()
