"""Delivery leases on outbox rows: take them, record the outcome under the lease, give up on the
exhausted. (A lease is a sender's hold on a row; a *claim* is a person's Pick Up.)

Taking leases is one atomic statement, ``UPDATE … WHERE id IN (SELECT … [FOR UPDATE SKIP LOCKED])
RETURNING``: on PostgreSQL the row locks let concurrent senders skip each other's rows, on
SQLite the engine's ``BEGIN IMMEDIATE`` makes the statement run alone. Either way a row goes to
one sender, who holds it until ``lease_expires_at``; every outcome write is conditioned on the
lease token, so a slow sender whose lease was taken over can't overwrite the new holder's result.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, Row, Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.handoffs.models import Handoff, HandoffStatus
from lifeline.notifications.models import GATED_KINDS, Delivery, DeliveryKind, DeliveryStatus

# Core, for one executemany UPDATE of many outcomes.
_table: Table = Delivery.__table__  # type: ignore[assignment]


@dataclass(frozen=True)
class LeasedDelivery:
    """What a sender needs of a row it holds; background work takes ids, not ORM objects."""

    id: str
    lease_token: str
    handoff_id: str
    recipient_user_id: str
    channel: str
    kind: str
    event_key: str
    message_id: str
    attempts: int


@dataclass(frozen=True)
class DeliveryOutcome:
    """The result of one attempt, written back under the lease that made it."""

    delivery_id: str
    lease_token: str
    status: DeliveryStatus
    error: str | None
    at: datetime
    # When status is PENDING: when to try again.
    retry_at: datetime | None = None
    # The send was never started (say, the lease ran short): the lease does not count.
    refund_attempt: bool = False


def _leasable(now: datetime, max_attempts: int) -> Any:
    return (
        (Delivery.status == DeliveryStatus.PENDING)
        & (Delivery.attempts < max_attempts)
        & or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now)
    )


async def lease_rows(
    *,
    db: AsyncSession,
    now: datetime,
    lease: timedelta,
    max_attempts: int,
    limit: int,
    ids: Sequence[str] | None,
    channels: Collection[str] | None,
    returning: Sequence[Any],
) -> tuple[str, Sequence[Row[Any]]]:
    """Lease up to ``limit`` rows: those named by ``ids`` (sent right after commit), else the
    due; → the lease token and the ``returning`` columns of each row leased.

    Each lease counts as an attempt, so a row that crashes every sender still runs out.
    ``channels`` limits the leases to the channels the caller can send. Shared by the
    notification relay (:func:`take`) and the integrations relay.
    """
    candidates = select(Delivery.id).where(_leasable(now, max_attempts))
    if channels is not None:
        candidates = candidates.where(Delivery.channel.in_(list(channels)))
    if ids is not None:
        candidates = candidates.where(Delivery.id.in_(list(ids)))
    else:
        candidates = candidates.where(Delivery.next_attempt_at <= now).order_by(
            Delivery.next_attempt_at, Delivery.id
        )
    candidates = candidates.limit(limit)
    if db.get_bind().dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True)
    token = str(uuid.uuid4())
    result = await db.execute(
        update(Delivery)
        .where(Delivery.id.in_(candidates.scalar_subquery()), _leasable(now, max_attempts))
        .values(
            lease_token=token,
            lease_expires_at=now + lease,
            attempts=Delivery.attempts + 1,
        )
        .returning(*returning)
        .execution_options(synchronize_session=False)
    )
    return token, result.all()


async def take(
    *,
    db: AsyncSession,
    now: datetime,
    lease: timedelta,
    max_attempts: int,
    limit: int,
    ids: Sequence[str] | None = None,
    channels: Collection[str] | None = None,
) -> list[LeasedDelivery]:
    """Lease push and email rows (:func:`lease_rows`) with what their sender needs."""
    token, rows = await lease_rows(
        db=db,
        now=now,
        lease=lease,
        max_attempts=max_attempts,
        limit=limit,
        ids=ids,
        channels=channels,
        returning=(
            Delivery.id,
            Delivery.handoff_id,
            Delivery.recipient_user_id,
            Delivery.channel,
            Delivery.kind,
            Delivery.event_key,
            Delivery.message_id,
            Delivery.attempts,
        ),
    )
    return [
        LeasedDelivery(
            id=row.id,
            lease_token=token,
            handoff_id=row.handoff_id,
            recipient_user_id=row.recipient_user_id,
            channel=row.channel,
            kind=row.kind,
            event_key=row.event_key,
            message_id=row.message_id,
            attempts=row.attempts,
        )
        for row in rows
    ]


async def record_outcomes(*, db: AsyncSession, outcomes: Sequence[DeliveryOutcome]) -> int:
    """Write each outcome and release its lease, only where that lease is still held.

    Returns how many rows took their outcome; the rest had been taken over by another sender.
    """
    if not outcomes:
        return 0
    statement = (
        update(_table)
        .where(_table.c.id == bindparam("o_id"), _table.c.lease_token == bindparam("o_token"))
        .values(
            status=bindparam("o_status"),
            last_error=bindparam("o_error"),
            sent_at=bindparam("o_sent_at"),
            next_attempt_at=bindparam("o_next"),
            attempts=_table.c.attempts - bindparam("o_refund"),
            lease_token=None,
            lease_expires_at=None,
        )
    )
    params = [
        {
            "o_id": o.delivery_id,
            "o_token": o.lease_token,
            "o_status": str(o.status),
            "o_error": o.error,
            "o_sent_at": o.at if o.status == DeliveryStatus.SENT else None,
            "o_next": o.retry_at or o.at,
            "o_refund": 1 if o.refund_attempt else 0,
        }
        for o in outcomes
    ]
    result: CursorResult[Any] = await db.execute(statement, params)  # type: ignore[assignment]
    return result.rowcount if result.rowcount >= 0 else len(outcomes)


async def fail_abandoned(
    *, db: AsyncSession, now: datetime, max_attempts: int, channels: Collection[str]
) -> int:
    """Dead-letter rows of these channels whose every attempt was leased and whose last
    sender vanished."""
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        update(Delivery)
        .where(
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.channel.in_(list(channels)),
            Delivery.attempts >= max_attempts,
            or_(Delivery.lease_expires_at.is_(None), Delivery.lease_expires_at <= now),
        )
        .values(
            status=DeliveryStatus.FAILED,
            last_error=f"gave up after {max_attempts} attempts: the sender stopped responding",
            lease_token=None,
            lease_expires_at=None,
            next_attempt_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def is_gated(claimed: LeasedDelivery) -> bool:
    """A later policy wave: sent only while its rows are held against the handoff's
    transitions (see ``hold_for_send``)."""
    return claimed.kind in GATED_KINDS


async def hold_for_send(*, db: AsyncSession, claimed: Sequence[LeasedDelivery]) -> set[str]:
    """Of these leased policy rows, lock those still worth sending until this transaction ends.

    Still worth sending: pending, under this lease, and their handoff still where the wave
    assumes it (open; claimed, for the claimer's reminder). The lock (PostgreSQL: the rows
    ``FOR UPDATE``; SQLite: the write lock every transaction takes) makes a claim, release,
    resolve, cancel or expiry that skips these rows wait until their sends are recorded, so
    none of them is sent after such a transition committed.
    """
    if not claimed:
        return set()
    leases = {c.id: c.lease_token for c in claimed}
    in_queue = (Delivery.kind != DeliveryKind.CLAIM_REMINDER) & (
        Handoff.status == HandoffStatus.OPEN
    )
    still_claimed = (Delivery.kind == DeliveryKind.CLAIM_REMINDER) & (
        Handoff.status == HandoffStatus.CLAIMED
    )
    query = (
        select(Delivery.id, Delivery.lease_token)
        .join(Handoff, Handoff.id == Delivery.handoff_id)
        .where(
            Delivery.id.in_(list(leases)),
            Delivery.status == DeliveryStatus.PENDING,
            in_queue | still_claimed,
        )
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Delivery)
    rows = (await db.execute(query)).all()
    return {row.id for row in rows if leases[row.id] == row.lease_token}
