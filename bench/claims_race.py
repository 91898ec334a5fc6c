"""Pick Up races through the HTTP API of a live ``lifeline serve`` on PostgreSQL, beside pgbench.

    .venv/bin/python bench/claims_race.py [--escalations 10000] [--claimers 50] [--inflight 2]
                                          [--server postgresql://postgres@127.0.0.1:5432/postgres]

Builds a throwaway database with one account: an escalating engineer and ``--claimers`` seniors,
each with an API token, and ``--escalations`` open escalations (one AI session each, bulk-loaded
with COPY). Then:

1. **HTTP**: for each escalation, every senior POSTs ``…/claim`` at once (``--inflight``
   escalations raced at a time); each race must have exactly one 200, the rest 409. Afterwards
   the database must show every escalation claimed once: one claimer each, the session assigned
   to that claimer, exactly one ``handoff.claimed`` event per escalation.
2. **Same-stack floor**: the escalations are reopened and raced again, the same way, against a
   bare FastAPI route served by uvicorn (its own process) that authenticates the bearer token
   with one query and runs the same conditional UPDATE through asyncpg: what this stack can
   do, so the gap to it is the product's own.
3. **pgbench floor**: the escalations are reopened and ``pgbench -c <claimers>`` runs the same
   conditional ``UPDATE handoffs … WHERE id = … AND status = 'open'`` the same number of times:
   once with consecutive transactions racing for the same row (the HTTP pattern; a ``nextval``
   picks the row), once with random rows (a single statement per transaction: the stricter floor).

Prints attempts per second of each and the ratios to the floors (aim: at least half of the
same-stack floor). The client
shares the machine with the server and PostgreSQL. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from _support import (
    DEFAULT_SERVER,
    BenchDatabase,
    bench_database,
    free_port,
    lifeline_serve,
    live_server,
    quantile,
    say,
    server_cpu_seconds,
    server_env,
)
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


@dataclass
class Team:
    account_id: str
    escalator_id: str
    senior_ids: list[str]
    senior_tokens: list[str]


async def seed_team(database_url: str, claimers: int) -> Team:
    from lifeline.accounts import service as accounts
    from lifeline.accounts.models import Role
    from lifeline.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            account, _owner, _secret = await accounts.create_account(
                db=db, name="Race", owner_email="owner@race.bench", owner_name="Owner"
            )
            escalator = await accounts.create_user(
                db=db,
                account_id=account.id,
                email="junior@race.bench",
                name="Junior",
                role=Role.ENGINEER,
                password=None,
            )
            ids, tokens = [], []
            for n in range(claimers):
                senior = await accounts.create_user(
                    db=db,
                    account_id=account.id,
                    email=f"senior{n}@race.bench",
                    name=f"Senior {n}",
                    role=Role.ENGINEER,
                    password=None,
                )
                _token, secret = await accounts.create_token(db=db, user=senior, name="bench")
                ids.append(senior.id)
                tokens.append(secret)
        return Team(account.id, escalator.id, ids, tokens)
    finally:
        await engine.dispose()


async def load_escalations(dsn: str, team: Team, count: int) -> list[tuple[str, str]]:
    """``count`` escalated sessions, an open escalation each (COPY); → [(session, handoff)]."""
    now = datetime.now(UTC)
    sessions, handoffs, pairs = [], [], []
    for n in range(count):
        sid, hid = str(uuid.uuid4()), str(uuid.uuid4())
        created = now - timedelta(seconds=count - n)
        sessions.append(
            (
                sid,
                team.account_id,
                team.escalator_id,
                None,
                f"Race {n}",
                "escalated",
                created,
                created,
            )
        )
        handoffs.append(
            (hid, sid, team.account_id, "escalate", "open", "", team.escalator_id, created, created)
        )
        pairs.append((sid, hid))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "ai_sessions",
            records=sessions,
            columns=[
                "id", "account_id", "created_by", "assigned_to", "title", "status",
                "created_at", "updated_at",
            ],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "handoffs",
            records=handoffs,
            columns=[
                "id", "session_id", "account_id", "intent", "status", "note", "created_by",
                "created_at", "queued_at",
            ],
        )  # fmt: skip
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return pairs


@dataclass
class RaceTally:
    races: int = 0
    wins: int = 0
    conflicts: int = 0
    errors: list[str] = field(default_factory=list)
    bad_races: list[str] = field(default_factory=list)
    race_seconds: list[float] = field(default_factory=list)
    client_cpu: float = 0.0  # seconds of this process's CPU while racing


def product_url(base: str, sid: str, hid: str) -> str:
    return f"{base}/api/v1/ai-sessions/{sid}/handoffs/{hid}/claim"


def floor_url(base: str, sid: str, hid: str) -> str:
    return f"{base}/floor/ai-sessions/{sid}/handoffs/{hid}/claim"


async def race_all(
    base: str,
    team: Team,
    pairs: list[tuple[str, str]],
    inflight: int,
    url_of: Callable[[str, str, str], str] = product_url,
) -> tuple[RaceTally, float]:
    tally = RaceTally()
    headers = [{"Authorization": f"Bearer {t}"} for t in team.senior_tokens]
    # Each senior has an HTTP client of their own, as each has a browser: one shared pool of
    # 100 connections costs the racing process more than the servers it measures (httpcore
    # scans every connection of its pool for every request it sends or finishes, so the
    # client's cost per claim grew with the server's latency). Idle connections are dropped
    # before uvicorn's 5 s keep-alive does, or a request sent just as the server closes one
    # fails with a ReadError that says nothing about claims.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1, keepalive_expiry=2.0)
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for pair in pairs:
        queue.put_nowait(pair)
    step = max(1, len(pairs) // 20)
    started = time.perf_counter()
    cpu = time.process_time()

    async def racer(clients: list[httpx.AsyncClient]) -> None:
        while True:
            try:
                sid, hid = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            url = url_of(base, sid, hid)
            t0 = time.perf_counter()
            answers = await asyncio.gather(
                *[client.post(url) for client in clients], return_exceptions=True
            )
            tally.race_seconds.append(time.perf_counter() - t0)
            wins = 0
            for answer in answers:
                if isinstance(answer, BaseException):
                    tally.errors.append(repr(answer))
                elif answer.status_code == 200:
                    wins += 1
                elif answer.status_code == 409:
                    tally.conflicts += 1
                else:
                    tally.errors.append(f"{answer.status_code} {answer.text[:200]}")
            tally.wins += wins
            tally.races += 1
            if wins != 1:
                tally.bad_races.append(f"{hid}: {wins} winners")
            if tally.races % step == 0:
                elapsed = time.perf_counter() - started
                say(
                    f"  {tally.races}/{len(pairs)} races, "
                    f"{tally.races * len(headers) / elapsed:,.0f} claims/s"
                )

    async with contextlib.AsyncExitStack() as stack:
        streams = [
            [
                await stack.enter_async_context(
                    httpx.AsyncClient(headers=h, limits=limits, timeout=60)
                )
                for h in headers
            ]
            for _ in range(inflight)
        ]
        await asyncio.gather(*[racer(clients) for clients in streams])
    tally.client_cpu = time.process_time() - cpu
    return tally, time.perf_counter() - started


async def verify(dsn: str, count: int) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            "claimed once": await conn.fetchval(
                "SELECT count(*) FROM handoffs WHERE status = 'claimed' AND claimed_by IS NOT NULL"
            ),
            "session assigned to its claimer": await conn.fetchval(
                "SELECT count(*) FROM handoffs h JOIN ai_sessions s ON s.id = h.session_id"
                " WHERE s.status = 'claimed' AND s.assigned_to = h.claimed_by"
            ),
            "handoff.claimed events": await conn.fetchval(
                "SELECT count(*) FROM events WHERE type = 'handoff.claimed'"
            ),
            "escalations with more than one claimed event": await conn.fetchval(
                "SELECT count(*) FROM (SELECT payload->>'id' FROM events"
                " WHERE type = 'handoff.claimed' GROUP BY 1 HAVING count(*) > 1) t"
            ),
            "escalations": count,
        }
    finally:
        await conn.close()


async def prepare_floor(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in (
            "UPDATE handoffs SET status = 'open', claimed_by = NULL, claimed_at = NULL",
            "DROP TABLE IF EXISTS bench_keys",
            "CREATE TABLE bench_keys AS"
            " SELECT row_number() OVER (ORDER BY created_at) AS k, id FROM handoffs",
            "ALTER TABLE bench_keys ADD PRIMARY KEY (k)",
            "DROP SEQUENCE IF EXISTS bench_seq",
            "CREATE SEQUENCE bench_seq",
            "VACUUM ANALYZE",
        ):
            await conn.execute(statement)
    finally:
        await conn.close()


UPDATE = (
    "UPDATE handoffs SET status = 'claimed', claimed_by = :senior, claimed_at = now()"
    " WHERE id = (SELECT id FROM bench_keys WHERE k = :k) AND status = 'open';"
)
RACING_SCRIPT = f"SELECT (nextval('bench_seq') - 1) / :claimers + 1 AS k \\gset\n{UPDATE}\n"
RANDOM_SCRIPT = f"\\set k random(1, :escalations)\n{UPDATE}\n"


def pgbench(
    database: BenchDatabase, script: str, *, clients: int, per_client: int, defines: dict[str, str]
) -> float:
    """Run ``script`` ``clients × per_client`` times; → transactions per second."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(script)
        path = f.name
    try:
        args = [
            "pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
            "-t", str(per_client), "-f", path,
        ]  # fmt: skip
        for key, value in defines.items():
            args += ["-D", f"{key}={value}"]
        result = subprocess.run(
            [*args, database.dsn], capture_output=True, text=True, timeout=3600, check=False
        )
    finally:
        Path(path).unlink()
    if result.returncode != 0:
        raise RuntimeError(f"pgbench failed:\n{result.stdout}\n{result.stderr}")
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", result.stdout)
    if not match:
        raise RuntimeError(f"no tps in pgbench output:\n{result.stdout}")
    return float(match.group(1))


def serve_floor(port: int, dsn: str) -> None:
    """The same-stack floor: a bare FastAPI route in uvicorn, as ``lifeline serve`` runs it,
    that authenticates the bearer token with one query and claims with the same conditional
    UPDATE through asyncpg (its own pool, as large as the product's: 30 connections)."""
    import hashlib
    from contextlib import asynccontextmanager

    import uvicorn

    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        nonlocal pool
        pool = await asyncpg.create_pool(dsn, min_size=10, max_size=30)
        yield
        await pool.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/floor/ai-sessions/{sid}/handoffs/{hid}/claim")
    async def claim(sid: str, hid: str, request: Request) -> JSONResponse:
        secret = request.headers.get("authorization", "").partition(" ")[2]
        assert pool is not None
        async with pool.acquire() as conn:
            user = await conn.fetchrow(
                "SELECT u.id, u.name FROM api_tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.deleted_at IS NULL",
                hashlib.sha256(secret.encode()).hexdigest(),
            )
            if user is None:
                return JSONResponse({"detail": "Invalid or revoked API token"}, 401)
            won = await conn.fetchval(
                "UPDATE handoffs SET status = 'claimed', claimed_by = $1, claimed_at = now()"
                " WHERE id = $2 AND session_id = $3 AND status = 'open' RETURNING id",
                user["id"],
                hid,
                sid,
            )
        if won is None:
            return JSONResponse({"detail": "Already picked up"}, 409)
        return JSONResponse({"id": hid, "status": "claimed", "claimed_by": user["id"]})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--escalations", type=int, default=10_000)
    parser.add_argument("--claimers", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=2, help="escalations raced at once")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL admin URL")
    parser.add_argument(
        "--server-workers", type=int, default=1, help="lifeline serve --workers (>1 needs --redis)"
    )
    parser.add_argument("--redis", default=None, help="LIFELINE_REDIS_URL for --server-workers")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--serve-floor", nargs=2, metavar=("PORT", "DSN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        serve_floor(int(args.serve_floor[0]), args.serve_floor[1])
        return
    n, claimers = args.escalations, args.claimers

    with bench_database(args.server, "claims", keep=args.keep) as database:
        say(f"seeding 1 escalator and {claimers} seniors with tokens")
        team = asyncio.run(seed_team(database.sqlalchemy, claimers))
        say(f"loading {n:,} open escalations (COPY)")
        pairs = asyncio.run(load_escalations(database.dsn, team, n))

        port = free_port()
        log = Path(tempfile.gettempdir()) / f"claims_race_server_{port}.log"
        extra = {"LIFELINE_REDIS_URL": args.redis} if args.redis else {}
        env = server_env(database.sqlalchemy, port, **extra)
        serve = [*lifeline_serve(port), "--workers", str(args.server_workers)]
        say(
            f"racing: {n:,} escalations × {claimers} claimers, {args.inflight} at a time,"
            f" {args.server_workers} server process(es)"
        )
        with live_server(serve, env, port, log) as base:
            cpu = server_cpu_seconds(base)
            tally, seconds = asyncio.run(race_all(base, team, pairs, args.inflight))
            cpu = server_cpu_seconds(base) - cpu
        attempts = tally.races * claimers
        http_rate = attempts / seconds
        checks = asyncio.run(verify(database.dsn, n))

        say(f"same-stack floor: a bare route in uvicorn, {n:,} × {claimers} claims")
        asyncio.run(prepare_floor(database.dsn))
        floor_port = free_port()
        floor_log = Path(tempfile.gettempdir()) / f"claims_race_floor_{floor_port}.log"
        floor_args = [sys.executable, __file__, "--serve-floor", str(floor_port), database.dsn]
        with live_server(floor_args, env, floor_port, floor_log) as floor_base:
            floor_cpu = server_cpu_seconds(floor_base)
            floor_tally, floor_seconds = asyncio.run(
                race_all(floor_base, team, pairs, args.inflight, floor_url)
            )
            floor_cpu = server_cpu_seconds(floor_base) - floor_cpu
        stack_rate = floor_tally.races * claimers / floor_seconds

        say(f"floor: pgbench -c {claimers}, the same conditional UPDATE × {attempts:,}")
        asyncio.run(prepare_floor(database.dsn))
        defines = {"senior": team.senior_ids[0], "claimers": str(claimers), "escalations": str(n)}
        racing_tps = pgbench(
            database, RACING_SCRIPT, clients=claimers, per_client=n, defines=defines
        )
        asyncio.run(prepare_floor(database.dsn))
        random_tps = pgbench(
            database, RANDOM_SCRIPT, clients=claimers, per_client=n, defines=defines
        )

    say("")
    say(f"escalations raced        {tally.races:,} × {claimers} claimers = {attempts:,} claims")
    say(f"HTTP claims              {http_rate:,.0f}/s over {seconds:.1f} s")
    say(
        f"race duration            p50 {quantile(tally.race_seconds, 0.5) * 1000:.1f} ms,"
        f" p99 {quantile(tally.race_seconds, 0.99) * 1000:.1f} ms (all {claimers} answered)"
    )
    say(
        f"answers                  {tally.wins:,} × 200, {tally.conflicts:,} × 409,"
        f" {len(tally.errors)} other"
    )
    say(f"races without exactly one winner: {len(tally.bad_races)}")
    for name, value in checks.items():
        say(f"  db: {name:<45} {value:,}")
    say(
        f"same-stack floor         {stack_rate:,.0f} claims/s; race of {claimers}: p50"
        f" {quantile(floor_tally.race_seconds, 0.5) * 1000:.1f} ms, p99"
        f" {quantile(floor_tally.race_seconds, 0.99) * 1000:.1f} ms;"
        f" {floor_tally.wins:,} × 200, {len(floor_tally.bad_races)} races without one winner,"
        f" {len(floor_tally.errors)} other"
    )
    say(
        f"server CPU per claim     {cpu / attempts * 1000:.2f} ms; same-stack floor"
        f" {floor_cpu / (floor_tally.races * claimers) * 1000:.2f} ms"
        f" ({cpu / attempts / (floor_cpu / (floor_tally.races * claimers)):.2f}x); the"
        f" racing client's own: {tally.client_cpu / attempts * 1000:.2f} and"
        f" {floor_tally.client_cpu / (floor_tally.races * claimers) * 1000:.2f} ms"
    )
    say(f"floor, racing rows       {racing_tps:,.0f} UPDATE/s (2 statements per transaction)")
    say(f"floor, random rows       {random_tps:,.0f} UPDATE/s (1 statement)")
    floor = max(racing_tps, random_tps)
    say(f"ratio HTTP / same stack  {http_rate / stack_rate:.3f}  (aim ≥ 0.5)")
    say(
        f"ratio HTTP / pgbench     {http_rate / floor:.3f} (best), {http_rate / racing_tps:.3f}"
        " (racing)"
    )
    say(f"ratio same stack / pgbench {stack_rate / floor:.3f} (best)")
    one_winner = (
        not tally.bad_races
        and checks["claimed once"] == n
        and checks["handoff.claimed events"] == n
        and checks["session assigned to its claimer"] == n
        and checks["escalations with more than one claimed event"] == 0
    )
    say(
        "exactly one winner per escalation (answers and database): "
        + ("yes" if one_winner else "NO")
    )
    if tally.errors:
        say(f"{len(tally.errors)} requests failed without an answer; first: {tally.errors[:3]}")
    sys.exit(0 if one_winner and not tally.errors else 1)


if __name__ == "__main__":
    main()
