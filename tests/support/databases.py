"""Test databases: a migrated SQLite file per test, a migrated PostgreSQL database per run.

SQLite: migrate once into a template file, copy it for each test.
PostgreSQL (LIFELINE_TEST_DATABASE_URL): create a fresh database per pytest run, migrate it once,
and truncate every table between tests. Under CI=true a missing PostgreSQL fails instead of
skipping.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from lifeline import migrate
from lifeline.db import create_engine
from lifeline.models import Base

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_env(name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        if IN_CI:
            pytest.fail(f"{name} is not set under CI: {what} tests must run there")
        pytest.skip(f"{name} not set: {what} not available")
    return value


class SqliteTemplate:
    def __init__(self, directory: Path) -> None:
        self.template = directory / "template.db"
        migrate.upgrade(f"sqlite+aiosqlite:///{self.template}")

    def fresh(self, directory: Path) -> str:
        target = directory / "lifeline.db"
        shutil.copyfile(self.template, target)
        return f"sqlite+aiosqlite:///{target}"


class PostgresDatabase:
    """One throwaway database on the server named by LIFELINE_TEST_DATABASE_URL."""

    def __init__(self, server_url: str) -> None:
        base = make_url(server_url)
        if base.drivername == "postgresql":
            base = base.set(drivername="postgresql+asyncpg")
        self.admin_url = base.render_as_string(hide_password=False)
        self.name = f"lifeline_test_{uuid.uuid4().hex[:10]}"
        self.url = base.set(database=self.name).render_as_string(hide_password=False)

    async def _admin(self, sql: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT", poolclass=None)
        try:
            async with engine.connect() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    def create(self) -> None:
        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        migrate.upgrade(self.url)

    def drop(self) -> None:
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    async def truncate(self) -> None:
        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        engine = create_engine(self.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        finally:
            await engine.dispose()
