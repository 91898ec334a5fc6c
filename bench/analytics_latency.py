"""Escalation analytics latency on PostgreSQL beside a bare count(*) floor, in the same run.

    .venv/bin/python bench/analytics_latency.py [--server postgresql://…/postgres] [--keep]

Builds a throwaway database: 50 accounts; the measured one has 100,000 handoffs (escalations and
parks, one AI session each) spread over the last 90 days, the 49 others 2,000 each. Bulk-loaded
with COPY, then VACUUM ANALYZE. Then, interleaved request by request so noise hits all alike:

- floor: ``SELECT count(*) FROM handoffs WHERE account_id = :a`` through the app's own engine;
- ``GET /api/v1/analytics/escalations`` (default window: the last 30 days) through the ASGI app;
- the same over the whole 90 days (``?since=<90 days ago>``).

Prints p50/p99 of each and the ratio to the floor; ``--compare-without-indexes`` then drops the
report's indexes (migration 0003) and measures again. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
from _support import quantile, say
from sqlalchemy import text
from sqlalchemy.engine import make_url

from lifeline import migrate
from lifeline.accounts import service as accounts
from lifeline.analytics.models import REPORT_INDEXES
from lifeline.app import create_app
from lifeline.config import Settings
from lifeline.context import AppContext

DAYS = 90
SENIORS = 30


def handoff_rows(
    rng: random.Random, account_id: str, users: list[str], count: int, now: datetime
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """``count`` handoffs (85% escalations) with one session each, in realistic states."""
    sessions: list[tuple[object, ...]] = []
    handoffs: list[tuple[object, ...]] = []
    for _ in range(count):
        created = now - timedelta(seconds=rng.uniform(0, DAYS * 86400))
        by = rng.choice(users)
        session_id = str(uuid.uuid4())
        escalate = rng.random() < 0.85
        claimed_by = claimed_at = resolved_by = resolved_at = cancelled_at = None
        status = "open"
        if escalate:
            wait = timedelta(seconds=rng.lognormvariate(math.log(300), 1.2))
            if created + wait < now and rng.random() < 0.97:
                claimed_by = rng.choice([u for u in users if u != by] or users)
                claimed_at = created + wait
                status = "claimed"
                work = timedelta(seconds=rng.lognormvariate(math.log(3600), 1.0))
                if claimed_at + work < now and rng.random() < 0.95:
                    resolved_by, resolved_at, status = claimed_by, claimed_at + work, "resolved"
            elif created + wait < now and rng.random() < 0.5:
                cancelled_at, status = created + wait, "cancelled"
            if status == "open" and created < now - timedelta(days=2):
                cancelled_at, status = created + timedelta(days=1), "cancelled"
        elif rng.random() < 0.7:
            resolved_by, resolved_at, status = by, created + timedelta(hours=2), "resolved"
        session_status = {"open": "escalated", "claimed": "claimed"}.get(status, "resolved")
        if not escalate:
            session_status = "parked" if status == "open" else "active"
        sessions.append(
            (
                session_id,
                account_id,
                by,
                claimed_by,
                "Stuck on something",
                session_status,
                created - timedelta(minutes=20),
                created,
            )
        )
        handoffs.append(
            (
                str(uuid.uuid4()),
                session_id,
                account_id,
                "escalate" if escalate else "park",
                status,
                "",
                by,
                created,
                claimed_by,
                claimed_at,
                resolved_by,
                resolved_at,
                cancelled_at,
                created,
                None,
            )
        )
    return sessions, handoffs


SESSION_COLUMNS = [
    "id",
    "account_id",
    "created_by",
    "assigned_to",
    "title",
    "status",
    "created_at",
    "updated_at",
]
HANDOFF_COLUMNS = [
    "id",
    "session_id",
    "account_id",
    "intent",
    "status",
    "note",
    "created_by",
    "created_at",
    "claimed_by",
    "claimed_at",
    "resolved_by",
    "resolved_at",
    "cancelled_at",
    "queued_at",
    "reminded_at",
]
USER_COLUMNS = ["id", "account_id", "email", "name", "role", "email_notifications", "created_at"]


async def load(
    conn: asyncpg.Connection, account_id: str, n: int, rng: random.Random, now: datetime
) -> None:
    users = [
        (str(uuid.uuid4()), account_id, f"u{i}@{account_id}.example", f"Senior {i}", "engineer")
        for i in range(SENIORS)
    ]
    await conn.copy_records_to_table(
        "users",
        records=[(*u, "always", now) for u in users],
        columns=USER_COLUMNS,
    )
    user_ids = [u[0] for u in users]
    chunk = 20_000
    for start in range(0, n, chunk):
        sessions, handoffs = handoff_rows(rng, account_id, user_ids, min(chunk, n - start), now)
        await conn.copy_records_to_table("ai_sessions", records=sessions, columns=SESSION_COLUMNS)
        await conn.copy_records_to_table("handoffs", records=handoffs, columns=HANDOFF_COLUMNS)


async def seed(app_ctx: AppContext, dsn: str, args: argparse.Namespace) -> tuple[str, str]:
    rng = random.Random(5)
    now = datetime.now(UTC)
    async with app_ctx.sessionmaker() as db, db.begin():
        account, _owner, token = await accounts.create_account(
            db=db, name="Measured", owner_email="owner@measured.example", owner_name="Owner"
        )
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        await load(conn, account.id, args.handoffs, rng, now)
        say(
            f"  measured account: {args.handoffs:,} handoffs ({time.perf_counter() - started:.1f}s)"
        )
        for i in range(args.accounts - 1):
            other = str(uuid.uuid4())
            await conn.execute(
                "INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)",
                other,
                f"Other {i}",
                now,
            )
            await load(conn, other, args.other_handoffs, rng, now)
            if (i + 1) % 10 == 0 or i == args.accounts - 2:
                say(f"  other accounts: {i + 1}/{args.accounts - 1}")
        say("  VACUUM ANALYZE")
        await conn.execute("VACUUM ANALYZE")
        total = await conn.fetchval("SELECT count(*) FROM handoffs")
        say(f"  {total:,} handoffs in {args.accounts} accounts")
    finally:
        await conn.close()
    return account.id, token


async def measure(args: argparse.Namespace) -> None:
    server = make_url(args.server)
    name = f"lifeline_bench_{uuid.uuid4().hex[:8]}"
    args.account_id = None
    admin_dsn = server.set(drivername="postgresql").render_as_string(hide_password=False)
    dsn = server.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    url = server.set(drivername="postgresql+asyncpg", database=name)
    database_url = url.render_as_string(hide_password=False)
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    say(f"database {name}: migrating")
    try:
        await asyncio.to_thread(migrate.upgrade, database_url)
        settings = Settings(env="test", database_url=database_url, secret_key="bench-" + "x" * 40)
        app = create_app(settings, plugins=[])
        async with app.router.lifespan_context(app):
            ctx: AppContext = app.state.ctx
            say("seeding")
            account_id, token = await seed(ctx, dsn, args)
            args.account_id = account_id
            await run_requests(app, ctx, account_id, token, args)
            if args.compare_without_indexes:
                say("")
                say("dropping the report indexes (migration 0003) to compare")
                conn = await asyncpg.connect(dsn)
                try:
                    for index in REPORT_INDEXES:
                        await conn.execute(f"DROP INDEX {index.name}")
                    await conn.execute("ANALYZE handoffs")
                finally:
                    await conn.close()
                args.requests, args.warmup = max(20, args.requests // 4), 5
                await run_requests(app, ctx, account_id, token, args)
    finally:
        if args.keep:
            say(f"kept database {name} (account {args.account_id})")
        else:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def run_requests(
    app: object, ctx: AppContext, account_id: str, token: str, args: argparse.Namespace
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    since_90 = (datetime.now(UTC) - timedelta(days=DAYS)).isoformat()
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    floor_sql = text("SELECT count(*) FROM handoffs WHERE account_id = :a")
    timings: dict[str, list[float]] = {"floor": [], "30 days": [], "90 days": []}
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

        async def floor() -> None:
            async with ctx.engine.connect() as conn:
                await conn.scalar(floor_sql, {"a": account_id})

        async def report(params: dict[str, str]) -> None:
            response = await client.get(
                "/api/v1/analytics/escalations", headers=headers, params=params
            )
            response.raise_for_status()

        steps = {
            "floor": floor,
            "30 days": lambda: report({}),
            "90 days": lambda: report({"since": since_90}),
        }
        first = (await client.get("/api/v1/analytics/escalations", headers=headers)).json()
        say(f"30-day totals: {first['totals']}, time to claim: {first['time_to_claim_seconds']}")
        say(f"warming up ({args.warmup} rounds)")
        for _ in range(args.warmup):
            for step in steps.values():
                await step()
        say(f"measuring ({args.requests} rounds, interleaved)")
        for i in range(args.requests):
            for label, step in steps.items():
                started = time.perf_counter()
                await step()
                timings[label].append((time.perf_counter() - started) * 1000)
            if (i + 1) % 50 == 0:
                say(f"  {i + 1}/{args.requests}")
    floor_p50, floor_p99 = quantile(timings["floor"], 0.5), quantile(timings["floor"], 0.99)
    say("")
    say("load average: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    say(f"{'':28} {'p50 ms':>9} {'p99 ms':>9} {'p99 / floor p99':>16}")
    for label, samples in timings.items():
        p50, p99 = quantile(samples, 0.5), quantile(samples, 0.99)
        name = "floor: SELECT count(*)" if label == "floor" else f"endpoint, {label}"
        say(f"{name:28} {p50:9.2f} {p99:9.2f} {p99 / floor_p99:15.1f}x")
    say(
        f"(p50 ratios: 30 days {quantile(timings['30 days'], 0.5) / floor_p50:.1f}x, "
        f"90 days {quantile(timings['90 days'], 0.5) / floor_p50:.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--handoffs", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=50)
    parser.add_argument("--other-handoffs", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--compare-without-indexes",
        action="store_true",
        help="afterwards drop the report's indexes and measure again",
    )
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
