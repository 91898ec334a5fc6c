"""Team queue latency with 1,000,000 sessions and 100,000 handoffs on PostgreSQL, beside two floors.

    .venv/bin/python bench/queue_latency.py [--sessions 1000000] [--handoffs 100000]
                                            [--requests 2000] [--server postgresql://…/postgres]

Builds a throwaway database: 100 accounts of 10 people; ``--sessions`` AI sessions spread over
them and the last 90 days; one handoff on every tenth session (``--handoffs``), 85% escalations
in realistic states (about 10% still open), 15% parks. Bulk-loaded server side with
``generate_series`` in batches (progress shown), then VACUUM ANALYZE. Then, interleaved request
by request so noise hits all three alike, one at a time:

- ``GET /api/v1/ai-sessions/queue`` (first page of 50) from a live ``lifeline serve`` (HTTP);
- floor 1, the same SQL bare: the statement the queue runs, compiled, through asyncpg;
- floor 2, a bare route: uvicorn serving a FastAPI route that returns a fixed body of the same
  size (HTTP, JSON content type, no database).

Prints p50/p99 of each and checks the aim: queue p99 ≤ SQL p99 + bare route p99 + 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import httpx
from _support import (
    DEFAULT_SERVER,
    bench_database,
    free_port,
    lifeline_serve,
    live_server,
    quantile,
    say,
    server_env,
)

ACCOUNTS = 100
PEOPLE = 10
BATCH = 100_000


async def seed_people(database_url: str) -> tuple[str, str]:
    """100 accounts of an owner and 9 engineers; → (the measured account's id, a token)."""
    from lifeline.accounts import service as accounts
    from lifeline.accounts.models import Role
    from lifeline.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            first: tuple[str, str] | None = None
            for a in range(ACCOUNTS):
                account, _owner, _ = await accounts.create_account(
                    db=db, name=f"Team {a}", owner_email=f"owner@t{a}.bench", owner_name="Owner"
                )
                for n in range(1, PEOPLE):
                    user = await accounts.create_user(
                        db=db,
                        account_id=account.id,
                        email=f"e{n}@t{a}.bench",
                        name=f"Engineer {n} of team {a}",
                        role=Role.ENGINEER,
                        password=None,
                    )
                    if first is None:
                        _token, secret = await accounts.create_token(db=db, user=user, name="b")
                        first = (account.id, secret)
        assert first is not None
        return first
    finally:
        await engine.dispose()


SESSIONS_SQL = """
INSERT INTO ai_sessions (id, account_id, created_by, assigned_to, title, status, created_at,
                         updated_at)
SELECT md5('s' || i)::uuid::text, a.id, u.id, NULL, 'Session ' || i,
       CASE WHEN i % 10 = 0 THEN 'escalated' ELSE 'active' END,
       now() - ((i::bigint * 7919) % (90 * 86400)) * interval '1 second',
       now() - ((i::bigint * 7919) % (90 * 86400)) * interval '1 second'
FROM generate_series($1::int, $2::int) AS i
JOIN bench_accounts a ON a.a = (i / 10) % 100
JOIN bench_people u ON u.a = a.a AND u.n = (i / 1000) % 10
"""

# Every tenth session gets a handoff. Of each 20: 15% parks; of escalations about 10% open,
# 20% claimed, the rest resolved or cancelled.
HANDOFFS_SQL = """
INSERT INTO handoffs (id, session_id, account_id, intent, status, note, created_by, created_at,
                      claimed_by, claimed_at, resolved_by, resolved_at, cancelled_at, queued_at)
SELECT md5('h' || i)::uuid::text, s.id, s.account_id,
       CASE WHEN k >= 17 THEN 'park' ELSE 'escalate' END,
       CASE WHEN k >= 17 THEN 'open' WHEN k < 2 THEN 'open' WHEN k < 6 THEN 'claimed'
            WHEN k < 15 THEN 'resolved' ELSE 'cancelled' END,
       'please look at the deploy log', s.created_by, s.created_at,
       CASE WHEN k BETWEEN 2 AND 14 THEN c.id END,
       CASE WHEN k BETWEEN 2 AND 14 THEN s.created_at + interval '5 minutes' END,
       CASE WHEN k BETWEEN 6 AND 14 THEN c.id END,
       CASE WHEN k BETWEEN 6 AND 14 THEN s.created_at + interval '1 hour' END,
       CASE WHEN k IN (15, 16) THEN s.created_at + interval '10 minutes' END,
       s.created_at
FROM (SELECT i, (i / 10) % 20 AS k FROM generate_series($1::int, $2::int) AS i
      WHERE i % 10 = 0) AS g
JOIN ai_sessions s ON s.id = md5('s' || g.i)::uuid::text
JOIN bench_people c ON c.a = (g.i / 10) % 100 AND c.n = ((g.i / 1000) + 1) % 10
"""


async def bulk_load(dsn: str, sessions: int, handoffs: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE bench_accounts AS"
            " SELECT (row_number() OVER (ORDER BY created_at, id) - 1)::int AS a, id FROM accounts"
        )
        await conn.execute(
            "CREATE TABLE bench_people AS"
            " SELECT b.a, (row_number() OVER (PARTITION BY u.account_id ORDER BY u.created_at,"
            " u.id) - 1)::int AS n, u.id FROM users u JOIN bench_accounts b ON b.id = u.account_id"
        )
        await conn.execute("CREATE INDEX ON bench_people (a, n)")
        await conn.execute("ANALYZE bench_accounts; ANALYZE bench_people")
        started = time.perf_counter()
        for low in range(1, sessions + 1, BATCH):
            high = min(sessions, low + BATCH - 1)
            await conn.execute(SESSIONS_SQL, low, high)
            say(f"  sessions {high:>9,}/{sessions:,}  ({time.perf_counter() - started:.0f} s)")
        # Handoffs sit on every tenth session: cover ``handoffs × 10`` sessions.
        span = min(sessions, handoffs * 10)
        for low in range(1, span + 1, BATCH * 2):
            high = min(span, low + BATCH * 2 - 1)
            await conn.execute(HANDOFFS_SQL, low, high)
            elapsed = time.perf_counter() - started
            say(f"  handoffs {high // 10:>9,}/{span // 10:,}  ({elapsed:.0f} s)")
        say("  VACUUM ANALYZE")
        await conn.execute("VACUUM ANALYZE")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM ai_sessions) AS sessions,"
            " (SELECT count(*) FROM handoffs) AS handoffs"
        )
        say(f"  loaded {counts['sessions']:,} sessions, {counts['handoffs']:,} handoffs")
    finally:
        await conn.close()


def queue_sql(account_id: str, limit: int) -> str:
    """The statement ``handoffs.service.team_queue_rows`` runs for a first page, values in."""
    from sqlalchemy.dialects import postgresql

    from lifeline.handoffs.models import HandoffStatus
    from lifeline.handoffs.service import queue_query

    query = queue_query(account_id=account_id, status=HandoffStatus.OPEN, cursor=None, limit=limit)
    return str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))


def serve_bare(port: int, size: int) -> None:
    """Floor 2's server: one route returning ``size`` bytes of JSON, nothing else."""
    import uvicorn
    from fastapi import FastAPI, Response

    body = b'{"items": "' + b"x" * max(0, size - 13) + b'"}'
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bare")
    async def bare() -> Response:
        return Response(body, media_type="application/json")

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def measure(
    dsn: str, sql: str, queue_url: str, bare_url: str, token: str, requests: int
) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"queue": [], "sql": [], "bare": []}
    conn = await asyncpg.connect(dsn)
    headers = {"Authorization": f"Bearer {token}"}
    step = max(1, requests // 10)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for n in range(-50, requests):  # 50 warm-up rounds
                t0 = time.perf_counter()
                await conn.fetch(sql)
                t1 = time.perf_counter()
                response = await client.get(queue_url, headers=headers)
                t2 = time.perf_counter()
                bare = await client.get(bare_url)
                t3 = time.perf_counter()
                assert response.status_code == 200 and bare.status_code == 200
                if n >= 0:
                    timings["sql"].append(t1 - t0)
                    timings["queue"].append(t2 - t1)
                    timings["bare"].append(t3 - t2)
                    if (n + 1) % step == 0:
                        say(f"  {n + 1}/{requests} rounds")
    finally:
        await conn.close()
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=1_000_000)
    parser.add_argument("--handoffs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL admin URL")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--serve-bare", nargs=2, type=int, metavar=("PORT", "BYTES"))
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(*args.serve_bare)
        return

    with bench_database(args.server, "queue", keep=args.keep) as database:
        say(f"seeding {ACCOUNTS} accounts × {PEOPLE} people")
        account_id, token = asyncio.run(seed_people(database.sqlalchemy))
        say(f"bulk-loading {args.sessions:,} sessions and {args.handoffs:,} handoffs")
        asyncio.run(bulk_load(database.dsn, args.sessions, args.handoffs))
        sql = queue_sql(account_id, 50)

        port, bare_port = free_port(), free_port()
        logs = Path(tempfile.gettempdir())
        env = server_env(database.sqlalchemy, port)
        with live_server(lifeline_serve(port), env, port, logs / f"queue_{port}.log") as base:
            queue_url = f"{base}/api/v1/ai-sessions/queue?limit=50"
            sample = httpx.get(queue_url, headers={"Authorization": f"Bearer {token}"})
            size = len(sample.content)
            items = len(sample.json()["items"])
            plan = subprocess.run(
                ["psql", database.dsn, "-At", "-c", f"EXPLAIN (ANALYZE, BUFFERS) {sql}"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            bare_args = [sys.executable, __file__, "--serve-bare", str(bare_port), str(size)]
            with live_server(bare_args, env, bare_port, logs / f"bare_{bare_port}.log") as bare:
                say(f"measuring {args.requests} interleaved rounds (queue body {size:,} bytes)")
                timings = asyncio.run(
                    measure(database.dsn, sql, queue_url, f"{bare}/bare", token, args.requests)
                )

    def ms(name: str, q: float) -> float:
        return quantile(timings[name], q) * 1000

    say("")
    say(f"queue page: {items} items, {size:,} bytes; plan of the bare SQL:")
    for line in plan.strip().splitlines():
        say(f"    {line}")
    for name, label in (
        ("queue", "GET /ai-sessions/queue"),
        ("sql", "floor: the SQL, bare"),
        ("bare", "floor: bare route"),
    ):
        say(f"{label:<24} p50 {ms(name, 0.5):7.2f} ms   p99 {ms(name, 0.99):7.2f} ms")
    budget = ms("sql", 0.99) + ms("bare", 0.99) + 5
    say(f"aim: queue p99 {ms('queue', 0.99):.2f} ms ≤ {budget:.2f} ms (SQL p99 + bare p99 + 5)")
    say("met" if ms("queue", 0.99) <= budget else "NOT met")


if __name__ == "__main__":
    main()
