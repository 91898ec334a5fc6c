"""Webhook throughput: deliveries per second from the outbox to a local receiver, for 1,000
events to 10 endpoints, beside a bare httpx loop posting the same bodies in the same run.

    .venv/bin/python bench/webhooks_throughput.py [--events 1000] [--endpoints 10]
                                                  [--rounds 3] [--database-url URL]

The receiver is an aiohttp server in a process of its own, answering 200 on ten paths and
counting what it gets. The outbox path is the real one: each transcript message records a
``session.message`` event, whose transaction writes one delivery row per subscribed endpoint;
the integrations relay claims them under a lease, vets each URL (the SSRF guard), signs each
body with ``standardwebhooks``, posts it, and records every outcome and attempt. The floor is
a bare httpx loop posting the same bodies to the same URLs with the same concurrency, no signing,
no database, measured twice: with one client for everything (the simplest loop) and with one
client per endpoint (the relay's own connection layout). The ratio is the outbox rate over the
faster of the two.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select, update

from lifeline import migrate
from lifeline.accounts import service as accounts
from lifeline.accounts.models import User
from lifeline.after_commit import AfterCommitRunner, TaskSet
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import MessageRole
from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.db import unit_of_work, utcnow
from lifeline.integrations import webhooks
from lifeline.integrations.models import DeliveryAttempt
from lifeline.integrations.plugin import install
from lifeline.integrations.relay import BATCH_SIZE, IntegrationRelay
from lifeline.integrations.sending import PER_ENDPOINT
from lifeline.notifications.models import Delivery, DeliveryStatus

RECEIVER_SCRIPT = """
import asyncio, sys
from aiohttp import web

count = 0

async def hook(request):
    global count
    await request.read()
    count += 1
    return web.Response(text="ok")

async def main(port):
    app = web.Application()
    app.router.add_post("/hook/{n}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        print(count, flush=True)
    await runner.cleanup()

asyncio.run(main(int(sys.argv[1])))
"""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Receiver:
    """The aiohttp receiver in a child process; ``count()`` asks how many POSTs it answered."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RECEIVER_SCRIPT, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the receiver did not start")

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{n}"

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


async def seed(ctx: AppContext, receiver: Receiver, endpoints: int) -> tuple[str, str]:
    """An account, its owner's session, and ``endpoints`` webhooks on session.message."""
    async with unit_of_work(ctx.sessionmaker, AfterCommitRunner(TaskSet())) as db:
        _account, owner, _secret = await accounts.create_account(
            db=db, name="Bench", owner_email="owner@bench.example", owner_name="Owner"
        )
        session = await sessions.create_session(
            db=db, actor=owner, title="Flaky deadlock in the payments migration", messages=[]
        )
        for n in range(endpoints):
            await webhooks.create_endpoint(
                db=db,
                actor=owner,
                url=receiver.url(n),
                event_types=["session.message"],
                description=f"bench {n}",
                enabled=True,
                allow_private=True,
            )
        return owner.id, session.id


async def record_events(ctx: AppContext, owner_id: str, session_id: str, events: int) -> None:
    """``events`` transcript messages, their rows written but never dispatched: due now."""
    for start in range(0, events, 100):
        async with unit_of_work(ctx.sessionmaker, AfterCommitRunner(TaskSet())) as db:
            owner = await db.get(User, owner_id)
            assert owner is not None
            for i in range(start, min(events, start + 100)):
                await sessions.add_message(
                    db=db,
                    actor=owner,
                    session_id=session_id,
                    role=MessageRole.USER,
                    content=f"Still deadlocking, run {i}: lock order payments → ledger.",
                )
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(Delivery)
            .where(Delivery.status == DeliveryStatus.PENDING)
            .values(next_attempt_at=utcnow())
        )


async def pending_bodies(ctx: AppContext, receiver: Receiver) -> list[tuple[str, bytes]]:
    """The URL and exact body of every queued delivery, for the bare loop to post."""
    async with ctx.sessionmaker() as db:
        rows = (
            await db.execute(
                select(Delivery.endpoint_id, Delivery.payload).where(
                    Delivery.status == DeliveryStatus.PENDING
                )
            )
        ).all()
    urls: dict[str, str] = {}
    out = []
    for endpoint_id, payload in rows:
        if endpoint_id not in urls:
            urls[endpoint_id] = receiver.url(len(urls))
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        out.append((urls[endpoint_id], body))
    return out


async def outbox_round(ctx: AppContext, relay: IntegrationRelay) -> tuple[float, int, int]:
    """Sweep until nothing is pending (retries, due 5 s later, included in the time)."""
    started = time.perf_counter()
    sent = retried = 0
    while True:
        counts = await relay.sweep()
        sent += counts.sent
        retried += counts.retrying
        async with ctx.sessionmaker() as db:
            pending = await db.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.status == DeliveryStatus.PENDING)
            )
        if not pending:
            break
        await asyncio.sleep(0.2)
        async with ctx.sessionmaker() as db, db.begin():
            await db.execute(
                update(Delivery)
                .where(Delivery.status == DeliveryStatus.PENDING)
                .values(next_attempt_at=utcnow())
            )
    elapsed = time.perf_counter() - started
    if retried:
        async with ctx.sessionmaker() as db:
            errors = (
                await db.execute(
                    select(DeliveryAttempt.response_excerpt, func.count())
                    .where(DeliveryAttempt.status_code.is_(None))
                    .group_by(DeliveryAttempt.response_excerpt)
                )
            ).all()
        say(f"  {retried} attempts retried: {[(e[:80], n) for e, n in errors]}")
    return sent / elapsed, sent, retried


async def bare_round(bodies: list[tuple[str, bytes]], *, per_endpoint: bool) -> float:
    """Same bodies, same URLs, as many requests in flight as the relay allows in all (its
    per-endpoint limit times the endpoints), in batches of the relay's size.

    ``per_endpoint``: one client (connection pool) per URL with the relay's per-endpoint limit,
    the relay's own layout; else one client for everything, the simplest loop.
    """
    urls = sorted({url for url, _ in bodies})
    in_flight = PER_ENDPOINT * len(urls)
    started = time.perf_counter()
    async with contextlib.AsyncExitStack() as stack:
        if per_endpoint:
            lanes = {
                url: (
                    await stack.enter_async_context(
                        httpx.AsyncClient(limits=httpx.Limits(max_connections=PER_ENDPOINT))
                    ),
                    asyncio.Semaphore(PER_ENDPOINT),
                )
                for url in urls
            }
        else:
            shared = await stack.enter_async_context(
                httpx.AsyncClient(limits=httpx.Limits(max_connections=in_flight))
            )
            slots = asyncio.Semaphore(in_flight)
            lanes = {url: (shared, slots) for url in urls}

        async def post(url: str, body: bytes) -> None:
            client, lane_slots = lanes[url]
            async with lane_slots:
                response = await client.post(
                    url, content=body, headers={"content-type": "application/json"}
                )
            response.raise_for_status()

        for start in range(0, len(bodies), BATCH_SIZE):
            await asyncio.gather(*(post(u, b) for u, b in bodies[start : start + BATCH_SIZE]))
    return len(bodies) / (time.perf_counter() - started)


async def run(
    settings: Settings, receiver: Receiver, events: int, endpoints: int, rounds: int
) -> list[tuple[float, float, float]]:
    ctx = AppContext.create(settings)
    relay = install(ctx)
    try:
        owner_id, session_id = await seed(ctx, receiver, endpoints)
        results = []
        total_retries = 0
        for n in range(1, rounds + 1):
            say(f"round {n}: recording {events} events")
            await record_events(ctx, owner_id, session_id, events)
            bodies = await pending_bodies(ctx, receiver)
            # Interleaved, so every path sees the same machine (others share its cores).
            shared = await bare_round(bodies, per_endpoint=False)
            outbox, sent, retried = await outbox_round(ctx, relay)
            total_retries += retried
            lanes = await bare_round(bodies, per_endpoint=True)
            if sent != events * endpoints:
                raise RuntimeError(f"round {n}: {sent} sent, expected {events * endpoints}")
            say(
                f"round {n}/{rounds}: bare one client {shared:7.1f}/s  bare per endpoint "
                f"{lanes:7.1f}/s  outbox {outbox:7.1f}/s  ratio to the faster "
                f"{outbox / max(shared, lanes):4.2f}"
            )
            results.append((shared, lanes, outbox))
        say(f"outbox attempts retried in all: {total_retries}")
        return results
    finally:
        await relay.aclose()
        await ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        database_url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        say(f"database {database_url.split('@')[-1]}; migrating")
        migrate.upgrade(database_url)
        receiver = Receiver(free_port())
        try:
            settings = Settings(
                env="test",
                database_url=database_url,
                secret_key="bench-secret-key-not-for-production",
                base_url="http://127.0.0.1:8000",
                webhook_allow_private=True,
            )
            results = asyncio.run(run(settings, receiver, args.events, args.endpoints, args.rounds))
            caught = receiver.count()
        finally:
            receiver.stop()
    expected = 3 * args.events * args.endpoints * args.rounds
    # A retried attempt may or may not have reached the receiver before it failed.
    if caught < expected:
        raise SystemExit(f"the receiver got {caught} posts, expected at least {expected}")
    shared = statistics.median(r[0] for r in results)
    lanes = statistics.median(r[1] for r in results)
    outbox = statistics.median(r[2] for r in results)
    ratio = statistics.median(o / max(a, b) for a, b, o in results)
    print(f"events x endpoints         {args.events} x {args.endpoints}, {args.rounds} rounds")
    print(f"bare httpx, one client     {shared:8.1f} posts/s (median)")
    print(f"bare httpx, per endpoint   {lanes:8.1f} posts/s (median)")
    print(f"outbox relay               {outbox:8.1f} signed deliveries/s (median)")
    print(f"ratio outbox / faster bare {ratio:8.2f}  (median of rounds; aim >= 0.8)")


if __name__ == "__main__":
    main()
