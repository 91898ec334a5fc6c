"""One Alembic history serves both databases, and the models match what it builds.

Each test migrates a brand-new database (a new SQLite file; a new PostgreSQL database on the test
server), then compares the migrated schema with the models the way ``alembic check`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from lifeline import migrate
from lifeline.db import create_engine
from lifeline.models import Base
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
