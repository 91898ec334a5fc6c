"""Outbox throughput: deliveries per second from the outbox to a local SMTP sink, for 1,000
recipients, beside a bare aiosmtplib send loop to the same sink in the same run.

    .venv/bin/python bench/outbox_throughput.py [--recipients 1000] [--database-url URL]

The sink is aiosmtpd in a process of its own, counting what it accepts. The outbox path is the
real one: one escalation writes a row per recipient per channel; the relay claims them under a
lease, renders each email from the templates, sends them over its connection pool and records
every outcome. The floor is the simplest correct thing: one aiosmtplib connection sending the
same number of messages in a loop. The ratio is outbox rate / bare rate.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib
from sqlalchemy import func, select, update

from lifeline import migrate
from lifeline.accounts import service as accounts
from lifeline.accounts.models import Role, User
from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.schemas import MessageCreate
from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.db import unit_of_work, utcnow
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Intent
from lifeline.notifications import outbox
from lifeline.notifications.models import Delivery, DeliveryStatus
from lifeline.notifications.plugin import install
from lifeline.notifications.relay import Relay

SINK_SCRIPT = """
import sys, threading, time
from aiosmtpd.controller import Controller

class Count:
    def __init__(self):
        self.n = 0
    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        return "250 OK"

handler = Count()
controller = Controller(handler, hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
for line in sys.stdin:
    print(handler.n, flush=True)
controller.stop()
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Sink:
    """aiosmtpd in a child process; ``count()`` asks it how many messages it accepted."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SINK_SCRIPT, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the SMTP sink did not start")

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("?\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def seed_team(ctx: AppContext, recipients: int) -> str:
    """An account with ``recipients`` people who hear about escalations; returns the escalator."""
    async with unit_of_work(ctx.sessionmaker, AfterCommitRunner(TaskSet())) as db:
        account, _owner, _secret = await accounts.create_account(
            db=db, name="Bench", owner_email="owner@bench.example", owner_name="Owner"
        )
        junior = await accounts.create_user(
            db=db,
            account_id=account.id,
            email="junior@bench.example",
            name="Jamie Junior",
            role=Role.ENGINEER,
            password=None,
        )
        for i in range(recipients - 1):  # the owner is a recipient too
            await accounts.create_user(
                db=db,
                account_id=account.id,
                email=f"senior{i}@bench.example",
                name=f"Senior {i}",
                role=Role.ENGINEER,
                password=None,
            )
            if i % 250 == 249:
                say(f"  seeded {i + 1} recipients")
        return junior.id


async def escalate_undispatched(ctx: AppContext, escalator_id: str, n: int) -> str:
    """One escalation whose rows no dispatcher sent: they wait for the relay, due now."""
    async with unit_of_work(ctx.sessionmaker, AfterCommitRunner(TaskSet())) as db:
        junior = await db.get(User, escalator_id)
        assert junior is not None
        session = await sessions.create_session(
            db=db,
            actor=junior,
            title=f"Flaky deadlock in the payments migration #{n}",
            messages=[
                MessageCreate(role="user", content="It deadlocks one run in five on CI."),
                MessageCreate(role="assistant", content="Two transactions lock in opposite order."),
            ],
        )
        handoff = await handoffs.create_handoff(
            db=db,
            actor=junior,
            session_id=session.id,
            intent=Intent.ESCALATE,
            note="Pair?",
            email_cap=ctx.settings.email_cap_per_hour,
        )
        # A big team's wave is written as one row and expanded after commit; here in the same
        # transaction, so the timed part is the relay's sending alone, as before waves.
        await outbox.expand_waves(db=db, email_cap=ctx.settings.email_cap_per_hour)
        await db.execute(
            update(Delivery)
            .where(Delivery.handoff_id == handoff.id)
            .values(next_attempt_at=utcnow())
        )
        return handoff.id


async def outbox_round(ctx: AppContext, relay: Relay, escalator_id: str, n: int) -> float:
    handoff_id = await escalate_undispatched(ctx, escalator_id, n)
    started = time.perf_counter()
    counts = await relay.sweep()
    elapsed = time.perf_counter() - started
    async with ctx.sessionmaker() as db:
        sent = await db.scalar(
            select(func.count())
            .select_from(Delivery)
            .where(
                Delivery.handoff_id == handoff_id,
                Delivery.channel == "email",
                Delivery.status == DeliveryStatus.SENT,
            )
        )
    if not sent or counts.sent != sent:
        raise RuntimeError(f"round {n}: {counts}, {sent} email rows sent")
    return sent / elapsed


async def bare_round(port: int, recipients: int) -> float:
    body = "A teammate escalated a session and needs a hand.\n" * 20
    started = time.perf_counter()
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False) as client:
        for i in range(recipients):
            message = EmailMessage()
            message["From"] = "lifeline@localhost"
            message["To"] = f"senior{i}@bench.example"
            message["Subject"] = "[Lifeline] Escalated: Flaky deadlock"
            message.set_content(body)
            message.add_alternative(f"<p>{body}</p>", subtype="html")
            await client.send_message(message)
    return recipients / (time.perf_counter() - started)


async def run(
    settings: Settings, port: int, recipients: int, rounds: int
) -> list[tuple[float, float]]:
    ctx = AppContext.create(settings)
    relay = install(ctx)
    try:
        say(f"seeding an account with {recipients} recipients")
        escalator_id = await seed_team(ctx, recipients)
        results = []
        for n in range(1, rounds + 1):
            # Alternate, so both paths see the same machine (others share its cores).
            bare = await bare_round(port, recipients)
            outbox = await outbox_round(ctx, relay, escalator_id, n)
            say(
                f"round {n}/{rounds}: bare {bare:7.1f}/s  outbox {outbox:7.1f}/s  "
                f"ratio {outbox / bare:4.2f}"
            )
            results.append((bare, outbox))
        return results
    finally:
        await relay.aclose()
        await ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    # The rounds commit through a runner with no handlers on purpose (no dispatch, no push).
    logging.getLogger("lifeline.after_commit").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        say(f"database {database_url.split('@')[-1]}; migrating")
        migrate.upgrade(database_url)
        port = free_port()
        sink = Sink(port)
        try:
            settings = Settings(
                env="test",
                database_url=database_url,
                secret_key="bench-secret-key-not-for-production",
                smtp_host="127.0.0.1",
                smtp_port=port,
                base_url="http://127.0.0.1:8000",
                # Every round emails the whole team: no hourly cap in the way of the measure.
                email_cap_per_hour=args.recipients * args.rounds,
            )
            results = asyncio.run(run(settings, port, args.recipients, args.rounds))
            caught = sink.count()
        finally:
            sink.stop()
    expected = 2 * args.recipients * args.rounds
    if caught != expected:
        raise SystemExit(f"the sink caught {caught} messages, expected {expected}")
    bare = statistics.median(b for b, _ in results)
    outbox = statistics.median(o for _, o in results)
    ratio = statistics.median(o / b for b, o in results)
    print(f"recipients             {args.recipients} (x {args.rounds} rounds, medians)")
    print(f"bare aiosmtplib loop   {bare:8.1f} messages/s")
    print(f"outbox relay           {outbox:8.1f} emails/s (and as many push rows recorded)")
    print(f"ratio outbox / bare    {ratio:8.2f}  (aim >= 0.8)")


if __name__ == "__main__":
    main()
