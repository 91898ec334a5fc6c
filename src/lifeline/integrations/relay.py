"""The integrations relay: lease webhook and Slack rows, send them, log every attempt.

Rows are claimed exactly as the notification relay claims email (one atomic UPDATE under a
lease; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so any number of servers and workers can run
it. Outcomes are written under the lease, with the attempt log and the endpoint's health, in
one transaction per batch.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline import metrics
from lifeline.after_commit import DeliverToIntegrations
from lifeline.config import Settings
from lifeline.db import new_id, utcnow
from lifeline.integrations import health
from lifeline.integrations.delivery import (
    MAX_ATTEMPTS,
    ClaimedSend,
    SendResult,
    retry_delay,
)
from lifeline.integrations.models import DeliveryAttempt, WebhookEndpoint
from lifeline.integrations.sending import WebhookSender
from lifeline.integrations.slack_sender import SlackSender
from lifeline.integrations.webhooks import signing_secrets
from lifeline.notifications import leases
from lifeline.notifications.leases import DeliveryOutcome
from lifeline.notifications.models import Channel, Delivery, DeliveryStatus

log = logging.getLogger(__name__)

CHANNELS = (str(Channel.WEBHOOK), str(Channel.SLACK))
BATCH_SIZE = 200


@dataclass
class IntegrationCounts:
    claimed: int = 0
    sent: int = 0
    skipped: int = 0
    retrying: int = 0
    failed: int = 0

    def add(self, other: IntegrationCounts) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def __str__(self) -> str:
        return (
            f"claimed={self.claimed}, sent={self.sent}, skipped={self.skipped}, "
            f"retrying={self.retrying}, failed={self.failed}"
        )


async def claim(
    *,
    db: AsyncSession,
    now: datetime,
    lease: timedelta,
    limit: int,
    ids: Sequence[str] | None = None,
) -> list[ClaimedSend]:
    """Lease up to ``limit`` webhook and Slack rows: these ``ids``, else the due ones."""
    token, rows = await leases.lease_rows(
        db=db,
        now=now,
        lease=lease,
        max_attempts=MAX_ATTEMPTS,
        limit=limit,
        ids=ids,
        channels=CHANNELS,
        returning=(
            Delivery.id,
            Delivery.channel,
            Delivery.account_id,
            Delivery.endpoint_id,
            Delivery.handoff_id,
            Delivery.message_id,
            Delivery.attempts,
            Delivery.payload,
        ),
    )
    return [
        ClaimedSend(
            id=row.id,
            lease_token=token,
            channel=row.channel,
            account_id=row.account_id,
            endpoint_id=row.endpoint_id,
            handoff_id=row.handoff_id,
            message_id=row.message_id,
            attempts=row.attempts,
            payload=dict(row.payload or {}),
        )
        for row in rows
    ]


@dataclass(frozen=True)
class _EndpointView:
    url: str | None
    enabled: bool
    secrets: list[str]


@dataclass(frozen=True)
class _Batch:
    items: list[ClaimedSend]
    endpoints: dict[str, _EndpointView]

    def __bool__(self) -> bool:
        return bool(self.items)


class IntegrationRelay:
    """Sends webhook and Slack rows; safe to run in any number of processes."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._settings = settings
        self._batch_size = batch_size
        self.webhooks = WebhookSender(settings)
        self.slack = SlackSender(settings=settings, sessionmaker=sessionmaker)
        self.totals = IntegrationCounts()

    @property
    def _lease(self) -> timedelta:
        return timedelta(seconds=self._settings.delivery_lease_seconds)

    async def on_commit(self, effect: DeliverToIntegrations) -> None:
        """After-commit handler: send these rows now. Never raises; the sweep is the backstop."""
        try:
            ids = effect.delivery_ids
            chunks = [ids[i : i + self._batch_size] for i in range(0, len(ids), self._batch_size)]
            await self._pipeline(chunks)
        except Exception:
            log.exception("dispatch of %d integration deliveries failed", len(effect.delivery_ids))

    async def sweep(self) -> IntegrationCounts:
        """Send every due webhook and Slack row (retries, and rows nobody dispatched)."""
        async with self._sessionmaker() as db, db.begin():
            # Rows whose every attempt was claimed by a sender that then vanished.
            abandoned = await leases.fail_abandoned(
                db=db, now=utcnow(), max_attempts=MAX_ATTEMPTS, channels=CHANNELS
            )
        counts = await self._pipeline(None)
        counts.failed += abandoned
        return counts

    async def _pipeline(self, chunks: Sequence[Sequence[str]] | None) -> IntegrationCounts:
        """Claim and send batch after batch (these chunks of ids, else every due row), each
        batch's outcomes written while the next one is being sent."""
        counts = IntegrationCounts()
        recording: asyncio.Task[IntegrationCounts] | None = None
        try:
            for n in itertools.count():
                if chunks is not None and n >= len(chunks):
                    break
                batch = await self._claim(ids=chunks[n] if chunks is not None else None)
                if batch:
                    results = await asyncio.gather(
                        *(self._send(i, batch.endpoints) for i in batch.items)
                    )
                    done = list(zip(batch.items, results, strict=True))
                    # One write in flight at a time behind the sends: the next waits for it.
                    if recording is not None:
                        counts.add(await recording)
                    recording = asyncio.create_task(self._record(done), name="webhook-outcomes")
                if chunks is None and len(batch.items) < self._batch_size:
                    break
        finally:
            if recording is not None:
                counts.add(await recording)
        self.totals.add(counts)
        return counts

    async def _claim(self, *, ids: Sequence[str] | None) -> _Batch:
        now = utcnow()
        async with self._sessionmaker() as db, db.begin():
            items = await claim(db=db, now=now, lease=self._lease, limit=self._batch_size, ids=ids)
            endpoints = await self._endpoints(db, items, now)
        return _Batch(items, endpoints)

    async def _endpoints(
        self, db: AsyncSession, claimed: list[ClaimedSend], now: datetime
    ) -> dict[str, _EndpointView]:
        ids = {c.endpoint_id for c in claimed if c.endpoint_id}
        if not ids:
            return {}
        rows = await db.scalars(select(WebhookEndpoint).where(WebhookEndpoint.id.in_(ids)))
        return {
            e.id: _EndpointView(
                url=None if e.deleted_at else e.url,
                enabled=e.enabled,
                secrets=signing_secrets(e, now),
            )
            for e in rows
        }

    async def _send(self, item: ClaimedSend, endpoints: dict[str, _EndpointView]) -> SendResult:
        """One send, isolated: whatever happens becomes this row's result."""
        try:
            if item.channel == Channel.SLACK:
                return await self.slack.send(item)
            view = endpoints.get(item.endpoint_id or "")
            return await self.webhooks.send(
                item,
                url=view.url if view else None,
                enabled=view.enabled if view else False,
                secrets=view.secrets if view else [],
                now=utcnow(),
            )
        except Exception as exc:
            log.exception("integration delivery %s crashed", item.id)
            return SendResult(DeliveryStatus.FAILED, f"{type(exc).__name__}: {exc}"[:500])

    def _outcome(
        self, item: ClaimedSend, result: SendResult, now: datetime, counts: IntegrationCounts
    ) -> DeliveryOutcome:
        if result.status != DeliveryStatus.FAILED or not result.retryable:
            if result.status == DeliveryStatus.SENT:
                counts.sent += 1
            elif result.status == DeliveryStatus.SKIPPED:
                counts.skipped += 1
            else:
                counts.failed += 1
            return DeliveryOutcome(item.id, item.lease_token, result.status, result.error, now)
        if item.attempts >= MAX_ATTEMPTS:
            counts.failed += 1
            error = f"gave up after {item.attempts} attempts: {result.error}"
            return DeliveryOutcome(item.id, item.lease_token, DeliveryStatus.FAILED, error, now)
        counts.retrying += 1
        retry_at = now + retry_delay(item.attempts, result.retry_after)
        return DeliveryOutcome(
            item.id, item.lease_token, DeliveryStatus.PENDING, result.error, now, retry_at=retry_at
        )

    async def _record(self, done: list[tuple[ClaimedSend, SendResult]]) -> IntegrationCounts:
        counts = IntegrationCounts(claimed=len(done))
        now = utcnow()
        outcomes = [self._outcome(item, result, now, counts) for item, result in done]
        for (item, _result), outcome in zip(done, outcomes, strict=True):
            metrics.delivery_attempted(item.channel)
            metrics.delivery_finished(item.channel, str(outcome.status))
        disabled: list[health.Disabled] = []
        try:
            async with self._sessionmaker() as db, db.begin():
                await leases.record_outcomes(db=db, outcomes=outcomes)
                attempts = [
                    {
                        "id": new_id(),
                        "delivery_id": item.id,
                        "at": result.attempt.at,
                        "status_code": result.attempt.status_code,
                        "duration_ms": result.attempt.duration_ms,
                        "response_excerpt": result.attempt.response_excerpt,
                    }
                    for item, result in done
                    if result.attempt is not None
                ]
                if attempts:
                    await db.execute(insert(DeliveryAttempt), attempts)
                for _item, result in done:
                    for record in result.records:
                        await db.merge(record)
                disabled = await health.track(db=db, done=done, now=now)
        except Exception:
            # The rows keep their lease and go out again once it expires, same webhook-id.
            log.exception("could not record %d integration outcomes", len(done))
            return counts
        for endpoint in disabled:
            await health.tell_owners(
                sessionmaker=self._sessionmaker, settings=self._settings, disabled=endpoint
            )
        return counts

    async def aclose(self) -> None:
        await self.webhooks.aclose()
