"""The outbox relay: claim rows under a lease, send them concurrently, record each outcome.

Each send is isolated: a slow, hanging or failing recipient only ever affects its own row, and
outcomes are written as they arrive (batched while the database is busy), not after the slowest.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline import metrics
from lifeline.after_commit import DispatchDeliveries
from lifeline.config import Settings
from lifeline.db import utcnow
from lifeline.notifications import content, leases
from lifeline.notifications.channels import DeliveryChannel, PermanentFailure
from lifeline.notifications.channels.email import send_bound
from lifeline.notifications.leases import DeliveryOutcome, LeasedDelivery
from lifeline.notifications.models import DeliveryStatus

log = logging.getLogger(__name__)

BATCH_SIZE = 200
# Outcomes are written as they arrive, gathered for at most this long or this many per write.
OUTCOME_WINDOW_SECONDS = 0.05
OUTCOME_BATCH = 200
MAX_ERROR_CHARS = 500
# Retrying an outcome write that failed: first pause, doubling up to this.
WRITE_RETRY_FIRST_SECONDS = 0.1
WRITE_RETRY_MAX_SECONDS = 2.0


def retry_delay(settings: Settings, attempts: int) -> timedelta:
    """Exponential backoff with a little jitter: base, 2×base, 4×base … capped."""
    seconds = settings.delivery_backoff_base_seconds * 2 ** max(0, attempts - 1)
    seconds *= 1 + random.uniform(0, 0.2)
    return timedelta(seconds=min(seconds, settings.delivery_backoff_max_seconds))


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR_CHARS]


@dataclass
class DeliveryCounts:
    """What a relay did; a worker logs these per sweep."""

    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    retrying: int = 0
    failed: int = 0
    lease_lost: int = 0
    abandoned: int = 0

    def add(self, other: DeliveryCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def minus(self, other: DeliveryCounts) -> DeliveryCounts:
        return DeliveryCounts(
            **{f.name: getattr(self, f.name) - getattr(other, f.name) for f in fields(self)}
        )

    def copy(self) -> DeliveryCounts:
        return self.minus(DeliveryCounts())

    def __str__(self) -> str:
        return ", ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


class _OutcomeWriter:
    """Writes outcomes as sends finish: one transaction for whatever has queued up meanwhile.

    A write that fails (the database restarting) is retried until the batch's lease runs out:
    the emails went out, and only a written outcome keeps them from going out again. Every
    write is conditioned on its lease token, so a late one can't overwrite another sender's.
    """

    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], *, retry_until: datetime
    ) -> None:
        self._sessionmaker = sessionmaker
        self._queue: asyncio.Queue[DeliveryOutcome | None] = asyncio.Queue()
        self._retry_until = retry_until
        self.written = 0

    def put(self, outcome: DeliveryOutcome) -> None:
        self._queue.put_nowait(outcome)

    def close(self) -> None:
        self._queue.put_nowait(None)

    async def run(self) -> None:
        closed = False
        while not closed:
            batch: list[DeliveryOutcome] = []
            item = await self._queue.get()
            # Gather what else finishes within a moment: one transaction for many outcomes.
            deadline = asyncio.get_running_loop().time() + OUTCOME_WINDOW_SECONDS
            while True:
                if item is None:
                    closed = True
                else:
                    batch.append(item)
                if closed or len(batch) >= OUTCOME_BATCH:
                    break
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await self._queue.get()
                except TimeoutError:
                    break
            if batch:
                await self._write(batch)

    async def _write(self, batch: list[DeliveryOutcome]) -> None:
        pause = WRITE_RETRY_FIRST_SECONDS
        while True:
            try:
                async with self._sessionmaker() as db, db.begin():
                    self.written += await leases.record_outcomes(db=db, outcomes=batch)
                return
            except Exception:
                if utcnow() + timedelta(seconds=pause) >= self._retry_until:
                    # The rows keep their lease and go out again once it expires, same
                    # Message-ID: the crash window, which a database outage this long opens.
                    log.exception("could not record %d delivery outcomes", len(batch))
                    return
                log.warning(
                    "recording %d delivery outcomes failed; retrying", len(batch), exc_info=True
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, WRITE_RETRY_MAX_SECONDS)


def recipients_of(notifications: Sequence[content.Notification]) -> list[str]:
    """Who a batch's live people are: their presence is asked once for all of them."""
    return [n.recipient.id for n in notifications if n.recipient.active]


# Opens a block whose sends see the presence of these users as asked once, on entry.
PresenceFor = Callable[[Iterable[str]], AbstractAsyncContextManager[None]]


@asynccontextmanager
async def _no_batch(_user_ids: Iterable[str]) -> AsyncIterator[None]:
    yield


class Relay:
    """Sends outbox rows through their channels; safe to run in any number of processes."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        channels: Mapping[str, DeliveryChannel],
        batch_size: int = BATCH_SIZE,
        presence_for: PresenceFor | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        # Presence asked once per batch of sends (``AppContext.presence_for``).
        self._presence_for: PresenceFor = presence_for or _no_batch
        self._settings = settings
        self._channels = dict(channels)
        self._batch_size = batch_size
        self.totals = DeliveryCounts()

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.delivery_lease_seconds)

    async def on_commit(self, effect: DispatchDeliveries) -> None:
        """After-commit handler: send a fresh wave now. Never raises; the sweep is the backstop."""
        try:
            await self.dispatch(effect.delivery_ids)
        except Exception:
            log.exception("dispatch of %d deliveries failed", len(effect.delivery_ids))

    async def dispatch(self, ids: Sequence[str]) -> DeliveryCounts:
        """Claim and send exactly these rows (those nobody else holds)."""
        counts = DeliveryCounts()
        for start in range(0, len(ids), self._batch_size):
            chunk = ids[start : start + self._batch_size]
            counts.add(await self._round(ids=chunk, now=utcnow()))
        return counts

    async def sweep(self, *, now: datetime | None = None) -> DeliveryCounts:
        """Send every due row: new ones nobody dispatched, retries, and expired leases."""
        counts = DeliveryCounts()
        moment = now or utcnow()
        async with self._sessionmaker() as db, db.begin():
            counts.abandoned = await leases.fail_abandoned(
                db=db,
                now=moment,
                max_attempts=self._settings.delivery_max_attempts,
                channels=tuple(self._channels),
            )
        self.totals.abandoned += counts.abandoned
        while True:
            round_counts = await self._round(ids=None, now=now or utcnow())
            counts.add(round_counts)
            if round_counts.claimed < self._batch_size:
                return counts

    async def _round(self, *, ids: Sequence[str] | None, now: datetime) -> DeliveryCounts:
        async with self._sessionmaker() as db, db.begin():
            claimed = await leases.take(
                db=db,
                now=now,
                lease=self._lease,
                max_attempts=self._settings.delivery_max_attempts,
                limit=self._batch_size,
                ids=ids,
                channels=tuple(self._channels),
            )
        if not claimed:
            return DeliveryCounts()
        counts = await self._send(claimed, lease_expires_at=now + self._lease)
        self.totals.add(counts)
        return counts

    async def _send(
        self, claimed: list[LeasedDelivery], *, lease_expires_at: datetime
    ) -> DeliveryCounts:
        gated = [c for c in claimed if leases.is_gated(c)]
        free = [c for c in claimed if not leases.is_gated(c)]
        counts = DeliveryCounts()
        if gated:
            counts.add(await self._send_gated(gated, lease_expires_at=lease_expires_at))
        if free:
            counts.add(await self._send_free(free, lease_expires_at=lease_expires_at))
        return counts

    async def _send_gated(
        self, claimed: list[LeasedDelivery], *, lease_expires_at: datetime
    ) -> DeliveryCounts:
        """Later policy waves: sent and recorded inside one transaction that holds their rows,
        so a claim (which skips them) either commits first and nothing is sent, or waits for
        this. The price: their outcomes are written together once the slowest send is done,
        and a crash before that resends the batch (with the same Message-IDs)."""
        counts = DeliveryCounts(claimed=len(claimed))
        start_by = lease_expires_at - send_bound(self._settings)
        try:
            async with self._sessionmaker() as db, db.begin():
                held = await leases.hold_for_send(db=db, claimed=claimed)
                notifications = await content.load_notifications(
                    db=db,
                    claimed=[c for c in claimed if c.id in held],
                    base_url=self._settings.base_url,
                )
                async with self._presence_for(recipients_of(notifications)):
                    outcomes = await asyncio.gather(
                        *(self._deliver(n, start_by=start_by) for n in notifications)
                    )
                written = await leases.record_outcomes(db=db, outcomes=outcomes)
        except Exception:
            # Leased and counted as an attempt: retried after the lease, dead-lettered at last.
            log.exception("could not send %d policy deliveries", len(claimed))
            return counts
        # Skipped by the transition that took the handoff out of the queue, before we got them.
        counts.skipped += len(claimed) - len(held)
        self._tally(counts, outcomes)
        counts.lease_lost = len(outcomes) - written
        return counts

    def _tally(self, counts: DeliveryCounts, outcomes: Sequence[DeliveryOutcome]) -> None:
        for outcome in outcomes:
            if outcome.status == DeliveryStatus.SENT:
                counts.sent += 1
            elif outcome.status == DeliveryStatus.SKIPPED:
                counts.skipped += 1
            elif outcome.status == DeliveryStatus.FAILED:
                counts.failed += 1
            else:
                counts.retrying += 1

    async def _send_free(
        self, claimed: list[LeasedDelivery], *, lease_expires_at: datetime
    ) -> DeliveryCounts:
        counts = DeliveryCounts(claimed=len(claimed))
        try:
            async with self._sessionmaker() as db, db.begin():
                notifications = await content.load_notifications(
                    db=db, claimed=claimed, base_url=self._settings.base_url
                )
        except Exception:
            # Leased and counted as an attempt: retried after the lease, dead-lettered at last.
            log.exception("could not load %d claimed deliveries", len(claimed))
            return counts
        writer = _OutcomeWriter(self._sessionmaker, retry_until=lease_expires_at)
        writing = asyncio.create_task(writer.run(), name="delivery-outcomes")
        # Never start a send that could outlive the lease: another sender may take the row then.
        start_by = lease_expires_at - send_bound(self._settings)

        async def one(notification: content.Notification) -> DeliveryOutcome:
            outcome = await self._deliver(notification, start_by=start_by)
            channel = notification.delivery.channel
            if not outcome.refund_attempt:
                metrics.delivery_attempted(channel)
            metrics.delivery_finished(channel, outcome.status)
            writer.put(outcome)
            return outcome

        try:
            async with self._presence_for(recipients_of(notifications)):
                outcomes = await asyncio.gather(*(one(n) for n in notifications))
        finally:
            writer.close()
            await writing
        self._tally(counts, outcomes)
        counts.lease_lost = len(outcomes) - writer.written
        return counts

    async def _deliver(
        self, notification: content.Notification, *, start_by: datetime
    ) -> DeliveryOutcome:
        """One send, fully isolated: whatever happens becomes this row's outcome."""
        delivery = notification.delivery
        if utcnow() > start_by:
            return DeliveryOutcome(
                delivery.id,
                delivery.lease_token,
                DeliveryStatus.PENDING,
                "not attempted: the lease ran short",
                utcnow(),
                retry_at=utcnow(),
                refund_attempt=True,
            )
        channel = self._channels.get(delivery.channel)
        try:
            if channel is None:
                raise PermanentFailure(f"no {delivery.channel} channel in this process")
            result = await channel.deliver(notification)
        except PermanentFailure as exc:
            log.warning("delivery %s failed for good: %s", delivery.id, exc)
            return DeliveryOutcome(
                delivery.id, delivery.lease_token, DeliveryStatus.FAILED, _describe(exc), utcnow()
            )
        except Exception as exc:
            now = utcnow()
            error = _describe(exc)
            if delivery.attempts >= self._settings.delivery_max_attempts:
                log.warning("delivery %s failed after %d attempts", delivery.id, delivery.attempts)
                return DeliveryOutcome(
                    delivery.id,
                    delivery.lease_token,
                    DeliveryStatus.FAILED,
                    f"gave up after {delivery.attempts} attempts: {error}",
                    now,
                )
            retry_at = now + retry_delay(self._settings, delivery.attempts)
            log.info("delivery %s attempt %d failed (%s)", delivery.id, delivery.attempts, error)
            return DeliveryOutcome(
                delivery.id,
                delivery.lease_token,
                DeliveryStatus.PENDING,
                error,
                now,
                retry_at=retry_at,
            )
        return DeliveryOutcome(
            delivery.id, delivery.lease_token, result.status, result.reason, utcnow()
        )

    async def aclose(self) -> None:
        for channel in self._channels.values():
            try:
                await channel.aclose()
            except Exception:
                log.warning("closing the %s channel failed", channel.name, exc_info=True)
