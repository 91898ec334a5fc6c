"""Schemathesis against the app's own OpenAPI, in process (ASGI): no 500, every answer documented.

Every operation of ``/openapi.json`` gets generated requests (valid and invalid) with an owner's
token; each response must not be a server error and must match the documented status codes,
content type, headers and body schema. Bounded examples keep it to a minute or two.

The schemas are built at import (schemathesis parametrises at collection) from ``app.openapi()``
itself, without a request: a request would start the app's lifespan in schemathesis's event-loop
thread before the databases exist, and on CPython 3.11.7 that thread formatting the failure's
traceback (``ast.parse``) beside the main thread's assertion rewriting of imported modules can
raise the spurious "AST constructor recursion depth mismatch" SystemError (gh-106905) and fail the
collection. The databases behind them are created, migrated and seeded by fixtures before the
first request starts the app.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from hypothesis.internal import lambda_sources
from schemathesis import checks
from schemathesis.python import asgi as schemathesis_asgi

from lifeline import migrate
from lifeline.app import create_app
from lifeline.db import create_engine, create_sessionmaker
from tests.conftest import make_settings
from tests.support.databases import PostgresDatabase, require_env
from tests.support.factories import Factory


def _describe_lambda_safely(
    describe: Callable[[Callable[..., object]], str],
) -> Callable[[Callable[..., object]], str]:
    """CPython 3.11.7's ``ast.parse`` can raise a spurious SystemError ("AST constructor recursion
    depth mismatch", gh-106905, fixed in 3.11.8) when Hypothesis parses a lambda's source just to
    name it in a strategy's repr. Schemathesis does that while collecting, so on 3.11.7 the whole
    suite's collection could fail. The name is cosmetic: fall back to a plain one."""

    def describe_or_plain(fn: Callable[..., object]) -> str:
        try:
            return describe(fn)
        except SystemError:
            return "lambda"

    return describe_or_plain


if sys.version_info < (3, 11, 8):
    lambda_sources.lambda_description = _describe_lambda_safely(  # type: ignore[assignment]
        lambda_sources.lambda_description
    )

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]
# A live event stream never ends by itself: the real-time tests cover it.
STREAMING = r"^/api/v1/events$"
EXAMPLES = settings(
    max_examples=20,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)

SQLITE_PATH = Path(tempfile.gettempdir()) / f"lifeline-schemathesis-{uuid.uuid4().hex}.db"
SQLITE_URL = f"sqlite+aiosqlite:///{SQLITE_PATH}"
_PG_SERVER = os.environ.get("LIFELINE_TEST_DATABASE_URL")
POSTGRES = PostgresDatabase(_PG_SERVER) if _PG_SERVER else None


def _schema(app: FastAPI) -> schemathesis.schemas.BaseSchema:
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app
    schema.location = "/openapi.json"
    return schema.exclude(path_regex=STREAMING)


sqlite_app = create_app(make_settings(SQLITE_URL))
postgres_app = create_app(make_settings(POSTGRES.url if POSTGRES else SQLITE_URL))
sqlite_schema = _schema(sqlite_app)
postgres_schema = _schema(postgres_app)


async def _owner_headers(database_url: str) -> dict[str, str]:
    engine = create_engine(database_url)
    try:
        team = await Factory(create_sessionmaker(engine)).team(
            "Fuzzed", junior="engineer", vic="viewer"
        )
    finally:
        await engine.dispose()
    return team.owner.headers


@pytest.fixture(scope="module")
def sqlite_headers() -> Iterator[dict[str, str]]:
    migrate.upgrade(SQLITE_URL)
    try:
        yield asyncio.run(_owner_headers(SQLITE_URL))
        schemathesis_asgi.shutdown_lifespans()
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def postgres_headers() -> Iterator[dict[str, str]]:
    require_env("LIFELINE_TEST_DATABASE_URL", "PostgreSQL")
    assert POSTGRES is not None
    POSTGRES.create()
    try:
        yield asyncio.run(_owner_headers(POSTGRES.url))
        schemathesis_asgi.shutdown_lifespans()
    finally:
        POSTGRES.drop()


@pytest.mark.slow
@sqlite_schema.parametrize()
@EXAMPLES
def test_every_operation_answers_as_documented_on_sqlite(
    case: schemathesis.Case, sqlite_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=sqlite_headers, checks=CHECKS)


@pytest.mark.slow
@pytest.mark.postgres
@postgres_schema.parametrize()
@EXAMPLES
def test_every_operation_answers_as_documented_on_postgres(
    case: schemathesis.Case, postgres_headers: dict[str, str]
) -> None:
    case.call_and_validate(headers=postgres_headers, checks=CHECKS)
