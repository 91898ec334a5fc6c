"""Prometheus metrics on a registry of Lifeline's own, and ``GET /metrics``.

Other layers call the small functions below (``handoff_created``, ``delivery_finished``,
``push_sent``, ``connections.inc()`` …) and never touch prometheus-client themselves.

Each process counts for itself and serves its own figures: scrape every API process and every
worker (Prometheus sums them). With ``PROMETHEUS_MULTIPROC_DIR`` set (an empty directory, wiped
on each deploy, shared by the processes of one host) prometheus-client's multiprocess mode is
used instead and any process's ``/metrics`` answers for all the processes on its host.

The outbox backlog is not counted as things happen: it is read from the database at scrape
time, so every process reports the same true figure.
"""

from __future__ import annotations

import atexit
import hmac
import os
from collections.abc import Iterable, Iterator
from datetime import datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.db import utcnow
from lifeline.notifications.models import Channel, Delivery, DeliveryStatus

REGISTRY = CollectorRegistry()
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

handoffs_created = Counter(
    "lifeline_handoffs_created",
    "Handoffs created, by intent (park or escalate).",
    ["intent"],
    registry=REGISTRY,
)
claims = Counter(
    "lifeline_claims", "Escalations picked up (the one winning claim).", registry=REGISTRY
)
claim_conflicts = Counter(
    "lifeline_claim_conflicts",
    "Claims that lost: someone else had it, or it was no longer open.",
    registry=REGISTRY,
)
deliveries = Counter(
    "lifeline_deliveries",
    "Deliveries that reached a final or retry state, by channel and status.",
    ["channel", "status"],
    registry=REGISTRY,
)
delivery_attempts = Counter(
    "lifeline_delivery_attempts",
    "Send attempts (first tries and retries), by channel.",
    ["channel"],
    registry=REGISTRY,
)
push_latency = Histogram(
    "lifeline_push_latency_seconds",
    "From the commit of an event to its send on a live connection.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
time_to_claim = Histogram(
    "lifeline_time_to_claim_seconds",
    "From escalation to Pick Up.",
    buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600),
    registry=REGISTRY,
)
connections = Gauge(
    "lifeline_live_connections",
    "Open real-time connections (WebSocket and SSE) in this process.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)
agent_waits = Gauge(
    "lifeline_agent_waits",
    "AI agents' waits (MCP wait_for_pickup / wait_for_reply) in progress in this process.",
    registry=REGISTRY,
    multiprocess_mode="livesum",
)

for _intent in ("park", "escalate"):
    handoffs_created.labels(intent=_intent)
for _channel in Channel:
    delivery_attempts.labels(channel=_channel.value)
    for _status in DeliveryStatus:
        deliveries.labels(channel=_channel.value, status=_status.value)


def handoff_created(intent: str) -> None:
    handoffs_created.labels(intent=intent).inc()


def claim_won(time_to_claim_seconds: float) -> None:
    claims.inc()
    time_to_claim.observe(max(0.0, time_to_claim_seconds))


def claim_conflict() -> None:
    claim_conflicts.inc()


def delivery_attempted(channel: str) -> None:
    delivery_attempts.labels(channel=channel).inc()


def delivery_finished(channel: str, status: str) -> None:
    """A delivery was marked ``status`` (sent, failed, skipped, or pending again for a retry)."""
    deliveries.labels(channel=channel, status=status).inc()


def push_sent(latency_seconds: float) -> None:
    push_latency.observe(max(0.0, latency_seconds))


def connection_opened() -> None:
    connections.inc()


def connection_closed() -> None:
    connections.dec()


class OutboxCollector(Collector):
    """Pending deliveries and the age of the oldest, as last read by :func:`refresh_outbox`."""

    def __init__(self) -> None:
        self.backlog: dict[str, int] = {c.value: 0 for c in Channel}
        self.oldest_age_seconds = 0.0

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        return self._families()

    def _families(self) -> Iterator[Metric]:
        backlog = GaugeMetricFamily(
            "lifeline_outbox_backlog",
            "Deliveries waiting to be sent (status pending), by channel.",
            labels=["channel"],
        )
        for channel, count in sorted(self.backlog.items()):
            backlog.add_metric([channel], count)
        yield backlog
        yield GaugeMetricFamily(
            "lifeline_outbox_oldest_age_seconds",
            "Age of the oldest pending delivery (0 when none is pending).",
            value=self.oldest_age_seconds,
        )


outbox = OutboxCollector()
REGISTRY.register(outbox)


async def refresh_outbox(*, db: AsyncSession, now: datetime | None = None) -> None:
    """Read the outbox backlog from the database into :data:`outbox`."""
    rows = (
        await db.execute(
            select(Delivery.channel, func.count(), func.min(Delivery.created_at))
            .where(Delivery.status == DeliveryStatus.PENDING)
            .group_by(Delivery.channel)
        )
    ).all()
    backlog = {c.value: 0 for c in Channel}
    oldest: datetime | None = None
    for channel, count, first in rows:
        backlog[channel] = count
        if first is not None and (oldest is None or first < oldest):
            oldest = first
    outbox.backlog = backlog
    moment = now or utcnow()
    outbox.oldest_age_seconds = max(0.0, (moment - oldest).total_seconds()) if oldest else 0.0


def render() -> bytes:
    """The exposition text: this process's registry, or every process's in multiprocess mode."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    registry.register(outbox)
    return generate_latest(registry)


if MULTIPROCESS:  # pragma: no cover - exercised only under PROMETHEUS_MULTIPROC_DIR
    # A dead process's live gauges (open connections) must not count any more.
    atexit.register(multiprocess.mark_process_dead, os.getpid())


router = APIRouter()


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return Response(
                '{"detail": "Metrics token required"}',
                status_code=401,
                media_type="application/json",
                headers={"WWW-Authenticate": "Bearer"},
            )
    ctx = request.app.state.ctx
    async with ctx.sessionmaker() as db:
        await refresh_outbox(db=db)
    return Response(render(), media_type=CONTENT_TYPE_LATEST)
