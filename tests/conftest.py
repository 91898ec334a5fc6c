"""Shared fixtures. ``backend`` runs a test on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from lifeline.app import create_app
from lifeline.config import Settings
from lifeline.context import AppContext
from tests.support.databases import PostgresDatabase, SqliteTemplate, require_env
from tests.support.factories import Factory

TEST_SECRET = "test-secret-key-not-for-production"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> SqliteTemplate:
    return SqliteTemplate(tmp_path_factory.mktemp("sqlite-template"))


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[PostgresDatabase]:
    server_url = require_env("LIFELINE_TEST_DATABASE_URL", "PostgreSQL")
    database = PostgresDatabase(server_url)
    database.create()
    try:
        yield database
    finally:
        database.drop()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    backend_name: str = request.param
    return backend_name


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of the test's backend."""
    if backend == "sqlite":
        template: SqliteTemplate = request.getfixturevalue("sqlite_template")
        return template.fresh(tmp_path)
    postgres: PostgresDatabase = request.getfixturevalue("postgres_database")
    asyncio.run(postgres.truncate())
    return postgres.url


@pytest.fixture
def redis_url() -> str:
    return require_env("LIFELINE_TEST_REDIS_URL", "Redis")


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "base_url": "http://testserver",
        "redis_url": None,
        "smtp_host": None,
        # Nothing listens there: Slack is never reached by accident (its tests run a fake).
        "slack_api_url": "http://127.0.0.1:9/api/",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def ctx(app: FastAPI) -> AppContext:
    context: AppContext = app.state.ctx
    return context


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture
def factory(ctx: AppContext) -> Factory:
    return Factory(ctx.sessionmaker)


def pytest_report_header() -> list[str]:
    return [
        f"postgres: {os.environ.get('LIFELINE_TEST_DATABASE_URL') or 'not set (skipped)'}",
        f"redis: {os.environ.get('LIFELINE_TEST_REDIS_URL') or 'not set (skipped)'}",
    ]
