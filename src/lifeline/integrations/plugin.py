"""Wiring the integrations relay into a process: send after commit, sweep for retries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from lifeline.after_commit import DeliverToIntegrations
from lifeline.context import AppContext
from lifeline.integrations.relay import IntegrationRelay

log = logging.getLogger(__name__)


def install(ctx: AppContext) -> IntegrationRelay:
    relay = IntegrationRelay(sessionmaker=ctx.sessionmaker, settings=ctx.settings)
    ctx.services["integrations"] = relay
    ctx.after_commit.register(DeliverToIntegrations, relay.handle_intent)
    return relay


async def sweep_forever(*, ctx: AppContext, relay: IntegrationRelay) -> None:
    """Due webhook and Slack rows every ``sweep_interval_seconds``; a failed sweep is logged."""
    while True:
        try:
            counts = await relay.sweep()
            if counts.claimed or counts.failed:
                log.info("integration sweep: %s", counts)
        except Exception:
            log.exception("integration sweep failed")
        await asyncio.sleep(ctx.settings.sweep_interval_seconds)


async def integrations_plugin(_app: FastAPI, ctx: AppContext) -> Callable[[], Awaitable[None]]:
    relay = install(ctx)
    sweeping = asyncio.get_running_loop().create_task(
        sweep_forever(ctx=ctx, relay=relay), name="integration-sweeps"
    )

    async def close() -> None:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)
        await ctx.tasks.drain(wait_seconds=10)
        await relay.aclose()

    return close
