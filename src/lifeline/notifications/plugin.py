"""Wiring the notification layer into a process: the relay, its channels and the sweeps.

The server installs it as a plugin (dispatch right after commit, a sweep at start-up and then
periodically); ``lifeline worker`` installs the same pieces and only sweeps.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from fastapi import FastAPI

from lifeline import sweeps
from lifeline.after_commit import DispatchDeliveries, ExpandWaves
from lifeline.context import AppContext
from lifeline.db import run_unit_of_work, utcnow
from lifeline.notifications import outbox
from lifeline.notifications.channels import DeliveryChannel
from lifeline.notifications.channels.email import EmailChannel, send_bound
from lifeline.notifications.channels.push import PushChannel
from lifeline.notifications.relay import DeliveryCounts, Relay
from lifeline.notifications.steps import StepCounts, run_due

log = logging.getLogger(__name__)
WAVES_PER_TRANSACTION = 20


def install(ctx: AppContext) -> Relay:
    """Build the relay with its channels, register it, and send new waves after each commit."""
    channels: dict[str, DeliveryChannel] = {
        "email": EmailChannel(ctx.settings, ctx.is_online),
        "push": PushChannel(ctx.is_online),
    }
    relay = Relay(
        sessionmaker=ctx.sessionmaker,
        settings=ctx.settings,
        channels=channels,
        presence_for=ctx.presence_for,
    )
    ctx.relay = relay
    ctx.after_commit.register(DispatchDeliveries, relay.on_commit)

    async def expand(effect: ExpandWaves) -> None:
        # The rows' own dispatch follows this commit; a failure here leaves the wave to the
        # sweep (``expand_pending_waves``).
        await run_unit_of_work(
            ctx.sessionmaker,
            ctx.after_commit,
            lambda db: outbox.expand_waves(
                db=db, wave_ids=effect.wave_ids, email_cap=ctx.settings.email_cap_per_hour
            ),
        )

    ctx.after_commit.register(ExpandWaves, expand)
    return relay


async def expand_pending_waves(ctx: AppContext) -> int:
    """Every wave not yet expanded (its process died after commit, or never had the handler),
    in transactions of a few; their rows are dispatched after each commit. → how many."""
    total = 0
    while True:
        expanded = await run_unit_of_work(
            ctx.sessionmaker,
            ctx.after_commit,
            lambda db: outbox.expand_waves(
                db=db, limit=WAVES_PER_TRANSACTION, email_cap=ctx.settings.email_cap_per_hour
            ),
        )
        total += expanded
        if expanded < WAVES_PER_TRANSACTION:
            return total


def warn_about_configuration(ctx: AppContext) -> None:
    settings = ctx.settings
    if not settings.smtp_configured:
        log.warning(
            "LIFELINE_SMTP_HOST is not set: email notifications are recorded as skipped "
            "('no SMTP server configured') and nobody offline hears about escalations"
        )
    if settings.delivery_lease_seconds < send_bound(settings).total_seconds():
        log.warning(
            "LIFELINE_DELIVERY_LEASE_SECONDS (%s) is shorter than one send may take (%s s): "
            "sends are deferred rather than risk two senders",
            settings.delivery_lease_seconds,
            send_bound(settings).total_seconds(),
        )


@dataclass(frozen=True)
class SweepReport:
    steps: StepCounts
    deliveries: DeliveryCounts
    waves: int = 0

    def __str__(self) -> str:
        return f"{self.steps}, waves expanded={self.waves}, {self.deliveries}"


async def sweep_once(*, ctx: AppContext, relay: Relay, now: datetime | None = None) -> SweepReport:
    """Escalation policy work that is due (steps, expiries, claim reminders, auto-releases),
    waves nobody expanded, then every due outbox row (the expanded waves' rows are sent by
    the after-commit dispatcher, as after an escalation).

    ``now`` moves the scheduler's clock only (tests travel in time with it); leases are always
    judged by the real clock, or a traveller would see every live lease as expired.
    """
    steps = await run_due(
        sessionmaker=ctx.sessionmaker,
        runner=ctx.after_commit,
        now=now or utcnow(),
        email_cap=ctx.settings.email_cap_per_hour,
    )
    waves = await expand_pending_waves(ctx)
    return SweepReport(steps=steps, deliveries=await relay.sweep(), waves=waves)


async def notifications_plugin(_app: FastAPI, ctx: AppContext) -> Callable[[], Awaitable[None]]:
    warn_about_configuration(ctx)
    relay = install(ctx)

    async def sweep() -> None:
        report = await sweep_once(ctx=ctx, relay=relay)
        deliveries = report.deliveries
        if report.steps.total or report.waves or deliveries.claimed or deliveries.abandoned:
            log.info("notification sweep: %s", report)

    sweeping = sweeps.start(ctx.settings.sweep_interval_seconds, sweep, name="notification sweep")

    async def close() -> None:
        await sweeps.stop(sweeping)
        await ctx.tasks.drain(wait_seconds=10)
        await relay.aclose()

    return close
