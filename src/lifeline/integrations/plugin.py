"""Wiring the integrations relay into a process: send after commit, sweep for retries."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from lifeline import sweeps
from lifeline.after_commit import DeliverToIntegrations
from lifeline.context import AppContext
from lifeline.integrations.relay import IntegrationRelay

log = logging.getLogger(__name__)


def install(ctx: AppContext) -> IntegrationRelay:
    relay = IntegrationRelay(sessionmaker=ctx.sessionmaker, settings=ctx.settings)
    ctx.integrations = relay
    ctx.after_commit.register(DeliverToIntegrations, relay.on_commit)
    return relay


async def integrations_plugin(_app: FastAPI, ctx: AppContext) -> Callable[[], Awaitable[None]]:
    relay = install(ctx)

    async def sweep() -> None:
        """Due webhook and Slack rows (retries, and rows nobody dispatched)."""
        counts = await relay.sweep()
        if counts.claimed or counts.failed:
            log.info("integration sweep: %s", counts)

    sweeping = sweeps.start(ctx.settings.sweep_interval_seconds, sweep, name="integration sweep")

    async def close() -> None:
        await sweeps.stop(sweeping)
        await ctx.tasks.drain(wait_seconds=10)
        await relay.aclose()

    return close
