"""One Alembic history serves both databases, and the models match what it builds.

Each test migrates a brand-new database (a new SQLite file; a new PostgreSQL database on the test
server), then compares the migrated schema with the models the way ``alembic check`` does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text
from sqlalchemy.engine import Connection

from lifeline import migrate
from lifeline.ai_sessions.models import AISession
from lifeline.db import create_engine, create_sessionmaker
from lifeline.models import Base
from lifeline.policies import service as policies
from lifeline.policies.models import EscalationSchedule
from tests.support.databases import PostgresDatabase, require_env


@pytest.fixture
def fresh_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database of the test's backend."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    database = PostgresDatabase(require_env("LIFELINE_TEST_DATABASE_URL", "PostgreSQL"))
    asyncio.run(database._admin(f'CREATE DATABASE "{database.name}"'))
    try:
        yield database.url
    finally:
        database.drop()


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _inspect(url: str) -> tuple[list[Any], set[str], str | None]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(_diff)
            tables = await conn.run_sync(_tables)
            version = None
            if "alembic_version" in tables:
                version = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            return diff, tables, version
    finally:
        await engine.dispose()


def test_there_is_exactly_one_head() -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1, script.get_heads()


def test_upgrade_head_builds_exactly_the_models(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)

    diff, tables, version = asyncio.run(_inspect(fresh_url))

    script = ScriptDirectory.from_config(migrate.alembic_config(fresh_url))
    assert version == script.get_current_head()
    assert {t.name for t in Base.metadata.sorted_tables} <= tables
    assert diff == [], "the models and the migrations disagree; add a revision:\n" + "\n".join(
        map(repr, diff)
    )


def test_downgrade_to_base_and_back(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    command.downgrade(migrate.alembic_config(fresh_url), "base")
    _diff_after_down, tables, _version = asyncio.run(_inspect(fresh_url))
    assert tables <= {"alembic_version"}

    migrate.upgrade(fresh_url)
    diff, tables, _version = asyncio.run(_inspect(fresh_url))
    assert diff == []
    assert {t.name for t in Base.metadata.sorted_tables} <= tables


async def _seed_before_policies(url: str) -> dict[str, str]:
    """An account with a 25-minute reminder, an open escalation, a reminded one, a claimed one."""
    engine = create_engine(url)
    ids = {
        k: str(uuid.uuid4())
        for k in ("account", "user", "s1", "s2", "s3", "open", "reminded", "claimed")
    }
    queued = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO accounts (id, name, reminder_minutes, created_at)"
                    " VALUES (:a, 'Old', 25, :t)"
                ),
                {"a": ids["account"], "t": queued},
            )
            await conn.execute(
                text(
                    "INSERT INTO users (id, account_id, email, name, role, email_notifications,"
                    " created_at) VALUES (:u, :a, 'old@x.example', 'Old', 'engineer', 'always', :t)"
                ),
                {"u": ids["user"], "a": ids["account"], "t": queued},
            )
            for session, handoff, status, reminded in (
                ("s1", "open", "open", None),
                ("s2", "reminded", "open", queued),
                ("s3", "claimed", "claimed", None),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO ai_sessions (id, account_id, created_by, title, status,"
                        " created_at, updated_at) VALUES (:s, :a, :u, 't', 'escalated', :t, :t)"
                    ),
                    {"s": ids[session], "a": ids["account"], "u": ids["user"], "t": queued},
                )
                await conn.execute(
                    text(
                        "INSERT INTO handoffs (id, session_id, account_id, intent, status, note,"
                        " created_by, created_at, queued_at, reminded_at, claimed_by, claimed_at)"
                        " VALUES (:h, :s, :a, 'escalate', :st, '', :u, :t, :t, :r, :c, :ct)"
                    ),
                    {
                        "h": ids[handoff], "s": ids[session], "a": ids["account"], "st": status,
                        "u": ids["user"], "t": queued, "r": reminded,
                        "c": ids["user"] if status == "claimed" else None,
                        "ct": queued if status == "claimed" else None,
                    },
                )  # fmt: skip
    finally:
        await engine.dispose()
    return ids


async def _policies_after(url: str, ids: dict[str, str]) -> tuple[Any, dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as db:
            policy = await policies.get_policy(db=db, account_id=ids["account"])
            rows = await db.scalars(select(EscalationSchedule))
            return policy, {r.handoff_id: (r.phase, r.step, r.next_step_at) for r in rows}
    finally:
        await engine.dispose()


def test_existing_accounts_and_escalations_move_onto_the_default_policy(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, "0004")
    ids = asyncio.run(_seed_before_policies(fresh_url))
    migrate.upgrade(fresh_url)

    policy, schedules = asyncio.run(_policies_after(fresh_url, ids))
    assert [s.after_minutes for s in policy.steps] == [0, 25]
    assert policy.repeat == 0 and policy.claim_reminder_minutes == 240
    queued = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert schedules == {
        # Not reminded yet: its reminder step is due when it would have been.
        ids["open"]: ("policy", 1, queued + timedelta(minutes=25)),
        # Claimed: the "still on it?" reminder.
        ids["claimed"]: ("claimed", 0, queued + timedelta(minutes=240)),
    }


async def _escalated_at(url: str, session_ids: list[str]) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        async with create_sessionmaker(engine)() as db:
            rows = await db.execute(
                select(AISession.id, AISession.escalated_at).where(AISession.id.in_(session_ids))
            )
            return {session_id: at for session_id, at in rows}
    finally:
        await engine.dispose()


def test_sessions_escalated_before_0009_remember_when(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, "0004")
    ids = asyncio.run(_seed_before_policies(fresh_url))
    migrate.upgrade(fresh_url)

    queued = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    sessions = [ids["s1"], ids["s2"], ids["s3"]]
    assert asyncio.run(_escalated_at(fresh_url, sessions)) == dict.fromkeys(sessions, queued)
