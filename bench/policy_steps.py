"""Escalation policy steps fired per second by one scheduler on PostgreSQL, beside a bare loop.

    .venv/bin/python bench/policy_steps.py [--escalations 10000] [--seniors 5] [--rounds 1]
                                           [--server postgresql://postgres@127.0.0.1:5432/postgres]

Builds a throwaway database with one account (an escalating engineer and ``--seniors`` seniors)
and ``--escalations`` open escalations under the default policy whose step 2 (the reminder) is
due now: the snapshot, step 1 already fired, one schedule row each (COPY). Then, alternating:

1. **Lifeline**: one scheduler (``notifications.steps.run_due``, what a worker's sweep runs)
   fires every due step: leases batches of schedule rows, and for each escalation, in its own
   transaction, the conditional write on the handoff, the ``handoff.reminder`` event, the wave
   (push + email per senior) through ``outbox.write_wave`` with the hourly email cap counted,
   and the next schedule entry. Sending is left out (see outbox_throughput.py): the after-commit
   dispatch is not wired.
2. **Floor**: a bare asyncpg loop doing, per escalation and in one transaction, the same
   conditional ``UPDATE handoffs … WHERE status = 'open' AND policy_round = …`` and the same
   delivery-row INSERTs (one executemany).

Between runs the database is put back (delivery rows, events and schedule rows reset). Prints
steps per second of each and the ratio (aim: at least 0.5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from _support import DEFAULT_SERVER, BenchDatabase, bench_database, say

EVERYONE = {"roles": ["engineer", "admin", "owner"], "users": []}
POLICY = {
    "steps": [
        {"after_minutes": 0, "notify": EVERYONE, "channels": ["push", "email"]},
        {"after_minutes": 10, "notify": EVERYONE, "channels": ["push", "email"]},
    ],
    "repeat": 0,
    "expire_after_minutes": None,
    "claim_reminder_minutes": 240,
    "auto_release_minutes": None,
}


@dataclass
class Team:
    account_id: str
    escalator_id: str
    senior_ids: list[str]


async def seed(database_url: str, dsn: str, seniors: int, count: int) -> tuple[Team, list[str]]:
    from lifeline.accounts import service as accounts
    from lifeline.accounts.models import Role
    from lifeline.db import create_engine, create_sessionmaker

    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as db, db.begin():
            account, owner, _secret = await accounts.create_account(
                db=db, name="Steps", owner_email="owner@steps.bench", owner_name="Owner"
            )
            escalator = await accounts.create_user(
                db=db, account_id=account.id, email="junior@steps.bench", name="Junior",
                role=Role.ENGINEER,
            )  # fmt: skip
            ids = [owner.id]
            for n in range(seniors - 1):
                user = await accounts.create_user(
                    db=db, account_id=account.id, email=f"s{n}@steps.bench", name=f"Senior {n}",
                    role=Role.ADMIN,
                )  # fmt: skip
                ids.append(user.id)
    finally:
        await engine.dispose()
    team = Team(account.id, escalator.id, ids)
    now = datetime.now(UTC)
    queued = now - timedelta(minutes=11)
    sessions, handoffs, hids = [], [], []
    for n in range(count):
        sid, hid = str(uuid.uuid4()), str(uuid.uuid4())
        sessions.append(
            (sid, team.account_id, team.escalator_id, f"Steps {n}", "escalated", queued, queued)
        )
        handoffs.append(
            (hid, sid, team.account_id, "escalate", "open", "", team.escalator_id, queued,
             queued, 0, 1)
        )  # fmt: skip
        hids.append(hid)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "ai_sessions", records=sessions,
            columns=["id", "account_id", "created_by", "title", "status", "created_at",
                     "updated_at"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "handoffs", records=handoffs,
            columns=["id", "session_id", "account_id", "intent", "status", "note", "created_by",
                     "created_at", "queued_at", "policy_round", "policy_step"],
        )  # fmt: skip
        # The snapshot: COPY's binary format has no encoder for json, so one UPDATE.
        await conn.execute("UPDATE handoffs SET policy = $1::text::json", json.dumps(POLICY))
    finally:
        await conn.close()
    return team, hids


async def reset(dsn: str, account_id: str, due: datetime) -> None:
    """Every escalation back to "step 2 due now", nothing of earlier runs left."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM deliveries")
        await conn.execute("DELETE FROM events WHERE type = 'handoff.reminder'")
        await conn.execute("DELETE FROM escalation_schedules")
        await conn.execute("UPDATE handoffs SET policy_step = 1")
        await conn.execute(
            "INSERT INTO escalation_schedules (handoff_id, account_id, phase, next_step_at, step,"
            " loop, round) SELECT id, $1, 'policy', $2, 1, 0, 0 FROM handoffs",
            account_id,
            due,
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def run_lifeline(database_url: str) -> tuple[int, float]:
    from lifeline.after_commit import AfterCommitRunner, TaskSet
    from lifeline.db import create_engine, create_sessionmaker, utcnow
    from lifeline.notifications.steps import run_due

    engine = create_engine(database_url)
    try:
        started = time.perf_counter()
        counts = await run_due(
            sessionmaker=create_sessionmaker(engine),
            runner=AfterCommitRunner(TaskSet()),
            now=utcnow(),
        )
        return counts.steps, time.perf_counter() - started
    finally:
        await engine.dispose()


INSERT = (
    "INSERT INTO deliveries (id, handoff_id, account_id, recipient_user_id, channel, kind,"
    " event_key, dedupe_key, message_id, status, attempts, next_attempt_at, created_at)"
    " VALUES ($1, $2, $3, $4, $5, 'step', $6, $7, $8, 'pending', 0, $9, $9)"
)


async def run_floor(dsn: str, team: Team, hids: list[str]) -> tuple[int, float]:
    conn = await asyncpg.connect(dsn)
    fired = 0
    try:
        started = time.perf_counter()
        for hid in hids:
            async with conn.transaction():
                done = await conn.execute(
                    "UPDATE handoffs SET policy_step = 2 WHERE id = $1 AND status = 'open'"
                    " AND policy_round = 0",
                    hid,
                )
                if done != "UPDATE 1":
                    continue
                now = datetime.now(UTC)
                key = f"{hid}:step:0.0.2"
                await conn.executemany(
                    INSERT,
                    [
                        (str(uuid.uuid4()), hid, team.account_id, uid, channel, key,
                         f"{key}:{uid}:{channel}", f"<{uuid.uuid4().hex}@lifeline>", now)
                        for uid in team.senior_ids
                        for channel in ("push", "email")
                    ],
                )  # fmt: skip
                fired += 1
        return fired, time.perf_counter() - started
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace, database: BenchDatabase) -> None:
    say(f"seeding {args.escalations:,} open escalations, {args.seniors} seniors each")
    team, hids = await seed(database.sqlalchemy, database.dsn, args.seniors, args.escalations)
    ratios = []
    for n in range(args.rounds):
        await reset(database.dsn, team.account_id, datetime.now(UTC) - timedelta(seconds=1))
        steps, seconds = await run_lifeline(database.sqlalchemy)
        lifeline_rate = steps / seconds
        say(f"round {n + 1}: lifeline scheduler {steps:,} steps in {seconds:.1f}s = "
            f"{lifeline_rate:,.0f} steps/s")  # fmt: skip
        await reset(database.dsn, team.account_id, datetime.now(UTC) - timedelta(seconds=1))
        fired, floor_seconds = await run_floor(database.dsn, team, hids)
        floor_rate = fired / floor_seconds
        say(f"round {n + 1}: bare asyncpg loop {fired:,} steps in {floor_seconds:.1f}s = "
            f"{floor_rate:,.0f} steps/s")  # fmt: skip
        ratios.append(lifeline_rate / floor_rate)
        say(f"round {n + 1}: ratio {ratios[-1]:.2f}")
    say(f"ratio (median of {len(ratios)}): {sorted(ratios)[len(ratios) // 2]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--escalations", type=int, default=10_000)
    parser.add_argument("--seniors", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--server", default=DEFAULT_SERVER)
    args = parser.parse_args()
    with bench_database(args.server, "steps", keep=False) as database:
        asyncio.run(main_async(args, database))


if __name__ == "__main__":
    main()
