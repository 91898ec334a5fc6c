"""Escalate to a big team: the request's latency with 1,000 recipients against 1 recipient.

    .venv/bin/python bench/escalate_fanout.py [--recipients 1000] [--requests 50] [--pause 0.5]
                                              [--server postgresql://postgres@127.0.0.1:5432/postgres]

A throwaway PostgreSQL database with two accounts: "small" (an escalating engineer and one
senior) and "big" (an escalating engineer and ``--recipients`` seniors). A live ``lifeline
serve`` (one uvicorn process, logs at WARNING). Each round creates an AI session in each account
and times ``POST …/handoff`` (escalate) in both, alternately, one request at a time with
``--pause`` seconds between rounds so the wave's sending (after commit, in the background) is
not what the next request waits for. Afterwards the database must show exactly one push and one
email row per recipient per escalation (email beyond the hourly cap written as skipped).

Prints p50/p99 of both and the ratio big / small (aim: p50 ≤ 1.5x).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import dataclass
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


@dataclass
class Team:
    account_id: str
    token: str
    recipients: int


async def seed(database_url: str, name: str, seniors: int) -> Team:
    from lifeline.accounts import service as accounts
    from lifeline.accounts.models import Role
    from lifeline.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            account, _owner, _secret = await accounts.create_account(
                db=db, name=name, owner_email=f"owner@{name}.bench", owner_name="Owner"
            )
            # The owner is a recipient too: the escalator is told nothing, everyone else is.
            escalator = await accounts.create_user(
                db=db,
                account_id=account.id,
                email=f"junior@{name}.bench",
                name="Junior",
                role=Role.ENGINEER,
                password=None,
            )
            for n in range(seniors - 1):
                await accounts.create_user(
                    db=db,
                    account_id=account.id,
                    email=f"senior{n}@{name}.bench",
                    name=f"Senior {n}",
                    role=Role.ENGINEER,
                    password=None,
                )
            _token, secret = await accounts.create_token(db=db, user=escalator, name="bench")
        return Team(account.id, secret, seniors)
    finally:
        await engine.dispose()


async def escalate_once(client: httpx.AsyncClient, team: Team) -> float:
    headers = {"Authorization": f"Bearer {team.token}"}
    created = await client.post(
        "/api/v1/ai-sessions",
        headers=headers,
        json={"title": "Stuck", "messages": [{"role": "user", "content": "help"}]},
    )
    created.raise_for_status()
    sid = created.json()["id"]
    t0 = time.perf_counter()
    answer = await client.post(
        f"/api/v1/ai-sessions/{sid}/handoff",
        headers=headers,
        json={"intent": "escalate", "note": "please help"},
    )
    elapsed = time.perf_counter() - t0
    if answer.status_code != 201:
        raise RuntimeError(f"escalate: {answer.status_code} {answer.text[:300]}")
    return elapsed


async def run(
    base: str, small: Team, big: Team, requests: int, pause: float
) -> tuple[list[float], list[float]]:
    small_s: list[float] = []
    big_s: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for _ in range(3):  # warm-up
            await escalate_once(client, small)
            await escalate_once(client, big)
            await asyncio.sleep(pause)
        for n in range(requests):
            first, second = (small, big) if n % 2 == 0 else (big, small)
            for team in (first, second):
                took = await escalate_once(client, team)
                (small_s if team is small else big_s).append(took)
                await asyncio.sleep(pause)
    return small_s, big_s


async def audit(dsn: str, team: Team) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        escalations = await conn.fetchval(
            "SELECT count(*) FROM handoffs WHERE account_id = $1", team.account_id
        )
        bad = await conn.fetchval(
            "SELECT count(*) FROM (SELECT h.id, d.channel, count(*) AS n"
            " FROM handoffs h JOIN deliveries d ON d.handoff_id = h.id"
            " WHERE h.account_id = $1 AND d.kind = 'escalated'"
            " GROUP BY h.id, d.channel) t WHERE n <> $2",
            team.account_id,
            team.recipients,
        )
        rows = await conn.fetchval(
            "SELECT count(*) FROM deliveries WHERE account_id = $1 AND kind = 'escalated'",
            team.account_id,
        )
        return {"escalations": escalations, "rows": rows, "waves with a wrong count": bad}
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--pause", type=float, default=0.5)
    parser.add_argument("--server", default=DEFAULT_SERVER, help="PostgreSQL admin URL")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    with bench_database(args.server, "fanout", keep=args.keep) as database:
        say(f"seeding a team of 1 and a team of {args.recipients:,}")
        small = asyncio.run(seed(database.sqlalchemy, "small", 1))
        big = asyncio.run(seed(database.sqlalchemy, "big", args.recipients))
        port = free_port()
        log = Path(tempfile.gettempdir()) / f"escalate_fanout_{port}.log"
        env = server_env(database.sqlalchemy, port)
        with live_server(lifeline_serve(port), env, port, log) as base:
            small_s, big_s = asyncio.run(run(base, small, big, args.requests, args.pause))
        checks = {
            "small": asyncio.run(audit(database.dsn, small)),
            "big": asyncio.run(audit(database.dsn, big)),
        }

    def ms(samples: list[float], q: float) -> float:
        return quantile(samples, q) * 1000

    say("")
    say(
        f"escalate, 1 recipient       p50 {ms(small_s, 0.5):.1f} ms, p99 {ms(small_s, 0.99):.1f} ms"
    )
    say(
        f"escalate, {args.recipients:,} recipients  p50 {ms(big_s, 0.5):.1f} ms,"
        f" p99 {ms(big_s, 0.99):.1f} ms"
    )
    ratio = quantile(big_s, 0.5) / quantile(small_s, 0.5)
    say(f"ratio p50 big / small       {ratio:.2f}x  (aim ≤ 1.5x)")
    ok = True
    for name, found in checks.items():
        say(f"  db ({name}): {found}")
        ok = ok and found["waves with a wrong count"] == 0 and found["escalations"] > 0
    say("one push and one email row per recipient per escalation: " + ("yes" if ok else "NO"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
