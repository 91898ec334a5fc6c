"""Stored first answers for requests sent with an ``Idempotency-Key``.

A client that retries a creating request (a timeout, a double click) sends the same key; the
first request's answer is stored in the same transaction as what it created, so a retry gets
that answer back and creates nothing, and a request that failed or rolled back stores nothing.

Concurrent requests with one key are serialised by the unique ``(user_id, key)`` constraint:
the second insert of the reservation waits for the first transaction (PostgreSQL) or for the
write lock (SQLite), then finds the stored answer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    CursorResult,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    delete,
    select,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from starlette.requests import Request
from starlette.responses import Response

from lifeline.db import Base, UTCDateTime, new_id, utcnow
from lifeline.errors import Conflict, Unprocessable

# Keys are remembered this long; after that the same key starts a new request.
KEY_LIFETIME = timedelta(hours=24)
MAX_KEY_LENGTH = 200
# Written while the first request runs; never committed (the answer replaces it).
_IN_PROGRESS = 0


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    key: Mapped[str] = mapped_column(String(200))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(500))
    # SHA-256 of the request's validated body (None in records older than this column).
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True)
class Outcome:
    status_code: int
    body: dict[str, Any]
    replayed: bool


Create = Callable[[], Awaitable[dict[str, Any]]]


async def _find(db: AsyncSession, user_id: str, key: str) -> IdempotencyRecord | None:
    record: IdempotencyRecord | None = await db.scalar(
        select(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .execution_options(populate_existing=True)
    )
    return record


def fingerprint(body: BaseModel) -> str:
    """The request as the route validated it: key order and spacing don't make it another."""
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(record: IdempotencyRecord, method: str, path: str, request_hash: str | None) -> Outcome:
    if (record.method, record.path) != (method, path):
        raise Unprocessable(
            f"Idempotency-Key: already used for {record.method} {record.path}; "
            "use a new key for a different request"
        )
    if record.request_hash is not None and request_hash not in (None, record.request_hash):
        # The IETF Idempotency-Key draft: a key reused with another payload is an error.
        raise Unprocessable(
            "Idempotency-Key: already used with a different request body; "
            "use a new key for a different request"
        )
    if record.status_code == _IN_PROGRESS:
        raise Conflict("Idempotency-Key: the first request with this key is still in progress")
    return Outcome(record.status_code, dict(record.response_body), replayed=True)


async def run_once(
    *,
    db: AsyncSession,
    user_id: str,
    key: str | None,
    method: str,
    path: str,
    status_code: int,
    create: Create,
    request_hash: str | None = None,
) -> Outcome:
    """Run ``create`` once per ``(user, key)``; later calls with the key get its answer back.

    ``create`` returns the JSON body of the answer. Without a key it simply runs. With
    ``request_hash`` (:func:`fingerprint` of the body) a key reused with another body is a 422.
    """
    if key is None:
        return Outcome(status_code, await create(), replayed=False)
    existing = await _find(db, user_id, key)
    if existing is not None and existing.created_at < utcnow() - KEY_LIFETIME:
        await db.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == existing.id))
        existing = None
    if existing is not None:
        return _replay(existing, method, path, request_hash)

    record = IdempotencyRecord(
        user_id=user_id,
        key=key,
        method=method,
        path=path,
        request_hash=request_hash,
        status_code=_IN_PROGRESS,
        response_body={},
        created_at=utcnow(),
    )
    try:
        async with db.begin_nested():
            db.add(record)
    except IntegrityError as exc:
        # Another request with this key got there first and has committed by now.
        if record in db:
            db.expunge(record)
        winner = await _find(db, user_id, key)
        if winner is None:  # it rolled back between our insert and this read: just retry
            raise Conflict(
                "Idempotency-Key: a concurrent request with this key failed; retry"
            ) from exc
        return _replay(winner, method, path, request_hash)

    body = await create()
    record.status_code = status_code
    record.response_body = body
    await db.flush()
    return Outcome(status_code, body, replayed=False)


async def create_once(
    *,
    db: AsyncSession,
    user_id: str,
    key: str | None,
    request: Request,
    response: Response,
    body: BaseModel,
    create: Create,
) -> dict[str, Any]:
    """A creating route's 201 answer, made once per ``Idempotency-Key`` (:func:`run_once`);
    a replay is marked with the ``Idempotent-Replayed`` header."""
    outcome = await run_once(
        db=db,
        user_id=user_id,
        key=key,
        method=request.method,
        path=request.url.path,
        status_code=201,
        create=create,
        request_hash=fingerprint(body),
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return outcome.body


async def purge_expired(*, db: AsyncSession, now: datetime | None = None) -> int:
    """Forget answers older than :data:`KEY_LIFETIME` (for a periodic sweep); → rows deleted."""
    cutoff = (now or utcnow()) - KEY_LIFETIME
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
    )
    return result.rowcount
