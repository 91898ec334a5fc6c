"""Engine, declarative base and the unit of work: the only place that commits."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from lifeline import after_commit

log = logging.getLogger(__name__)
T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        # SQLite keeps text; a fixed naive UTC form keeps comparisons and ordering lexical.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# SQLSTATEs of a transaction the database aborted only because of a concurrent one: running it
# again is safe and will, almost always, simply work.
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
# How many times one unit of work runs at most before such a failure is reported.
TRANSACTION_ATTEMPTS = 4


def transient_conflict(exc: BaseException) -> bool:
    """True for a deadlock or serialization failure: the unit of work may be run again."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        sqlstate = getattr(current, "sqlstate", None) or getattr(current, "pgcode", None)
        if sqlstate in TRANSIENT_SQLSTATES:
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def create_engine(database_url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine; on SQLite every transaction takes the write lock up front.

    SQLite upgrades a read lock to a write lock lazily, and two transactions that both read
    then write deadlock with SQLITE_BUSY whatever the busy timeout. ``BEGIN IMMEDIATE`` makes
    writers queue instead, so conditional updates such as a claim stay atomic across processes.
    """
    if database_url.startswith("sqlite"):
        engine = create_async_engine(
            database_url, connect_args={"timeout": 30, "isolation_level": None}, **kwargs
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Up to 30 connections, all kept: overflow connections (opened for a burst, closed again
    # as soon as it ends) each cost a connect, the driver's set-up queries and every statement
    # prepared anew, which under a burst of Pick Ups was most of the work.
    kwargs.setdefault("pool_size", 30)
    kwargs.setdefault("max_overflow", 0)
    engine = create_async_engine(database_url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        ping_when_idle(engine)
    return engine


def create_read_engine(engine: AsyncEngine) -> AsyncEngine | None:
    """The same pool, its statements run outside any transaction (PostgreSQL's autocommit): a
    lone read then costs one round trip instead of ``BEGIN``, the read and ``ROLLBACK``. Under
    READ COMMITTED each statement of a transaction sees its own snapshot anyway, so a read that
    takes no lock sees the same there as here. None on SQLite, where a transaction's reads are
    consistent with its writes (it holds the write lock) and should stay inside it.
    """
    if engine.dialect.name == "sqlite":
        return None
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def create_read_sessionmaker(
    read_engine: AsyncEngine | None,
) -> async_sessionmaker[AsyncSession] | None:
    """Sessions over :func:`create_read_engine`'s connections; None on SQLite."""
    if read_engine is None:
        return None
    return async_sessionmaker(read_engine, expire_on_commit=False, autoflush=False)


# A pooled connection back in use after this long is pinged first: the database may have
# restarted, or a proxy dropped it, while it sat idle. One in steady use isn't (a ping on
# every checkout is a round trip per request); if its server went away meanwhile, the request
# fails as "unavailable" and the pool throws away every connection of that generation.
IDLE_PING_SECONDS = 10.0


def ping_when_idle(engine: AsyncEngine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """Pre-ping only connections that sat in the pool longer than ``idle_seconds``."""
    pool = engine.sync_engine.pool
    dialect = engine.sync_engine.dialect

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info["lifeline_idle_since"] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("lifeline_idle_since")
        if since is None or time.monotonic() - since <= idle_seconds:
            return
        try:
            alive = dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool retries the checkout with a fresh connection.
            raise DisconnectionError("pooled connection failed its ping") from exc
        if not alive:
            raise DisconnectionError("pooled connection failed its ping")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession], runner: after_commit.AfterCommitRunner
) -> AsyncIterator[AsyncSession]:
    """One transaction: commit on success, roll back on error, then run its side effects.

    Side effects recorded during a transaction that rolls back are dropped, so nothing is sent about
    work that never happened.
    """
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            after_commit.discard(session)
            await session.rollback()
            raise
        effects = after_commit.take(session)
    runner.run(effects)


async def run_unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
    runner: after_commit.AfterCommitRunner,
    work: Callable[[AsyncSession], Awaitable[T]],
    *,
    attempts: int = TRANSACTION_ATTEMPTS,
) -> T:
    """``work`` in one :func:`unit_of_work`, run again from the start (a bounded number of
    times, after a short random pause) when the database aborted it for a deadlock or a
    serialization failure: it was rolled back whole and its side effects dropped.

    For the worker and the command line; an HTTP request's unit of work is a dependency that
    can't re-run its route, so ``middleware.RetryTransientMiddleware`` re-runs the request.
    """
    for attempt in range(1, attempts + 1):
        try:
            async with unit_of_work(sessionmaker, runner) as session:
                return await work(session)
        except Exception as exc:
            if attempt == attempts or not transient_conflict(exc):
                raise
            log.info(
                "transaction conflict (%s), running it again (attempt %d of %d)",
                getattr(exc, "orig", exc),
                attempt + 1,
                attempts,
            )
            await asyncio.sleep(random.uniform(0.005, 0.05) * attempt)
    raise AssertionError("unreachable")
