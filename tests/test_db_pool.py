"""The pool pings a connection only when it sat idle, and replaces one that died meanwhile."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from lifeline.db import create_engine, ping_when_idle
from tests.support.databases import PostgresDatabase


async def test_a_connection_in_steady_use_is_not_pinged_one_idle_is_and_a_dead_one_replaced(
    postgres_database: PostgresDatabase,
) -> None:
    engine = create_engine(postgres_database.url, pool_size=1, max_overflow=0)
    admin = create_engine(postgres_database.url, pool_size=1, max_overflow=0)
    dialect = engine.sync_engine.dialect
    ping = dialect.do_ping
    pings: list[Any] = []

    def counted_ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return ping(dbapi_connection)

    dialect.do_ping = counted_ping  # type: ignore[method-assign]
    try:
        async with engine.connect() as conn:
            pid = await conn.scalar(text("SELECT pg_backend_pid()"))
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT pg_backend_pid()")) == pid
        assert pings == []  # in steady use: no round trip before each checkout

        # Idle "too long" from now on: the next checkout pings, finds it dead, reconnects.
        ping_when_idle(engine, idle_seconds=0.0)
        async with admin.connect() as conn:
            await conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        async with engine.connect() as conn:
            fresh = await conn.scalar(text("SELECT pg_backend_pid()"))
        assert len(pings) == 1
        assert fresh != pid
    finally:
        await engine.dispose()
        await admin.dispose()


async def test_pool_pre_ping_asked_for_explicitly_still_works(
    postgres_database: PostgresDatabase,
) -> None:
    engine = create_engine(postgres_database.url, pool_pre_ping=True)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT 1")) == 1
    finally:
        await engine.dispose()
