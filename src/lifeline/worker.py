"""``lifeline worker``: the escalation scheduler and the outbox relay, outside the server.

Each sweep fires the escalation policy steps that are due (and expiries, claim reminders,
auto-releases), then sends every due outbox row (new ones no server
dispatched, retries whose backoff has passed, rows whose sender died and whose lease expired),
and forgets idempotency keys past their lifetime.
Any number of workers and servers can sweep the same database: rows are claimed under a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable

from lifeline import idempotency
from lifeline.after_commit import DropConnections, PublishEvent
from lifeline.config import Settings
from lifeline.context import AppContext
from lifeline.db import run_unit_of_work
from lifeline.integrations.plugin import install as install_integrations
from lifeline.notifications.plugin import install, sweep_once, warn_about_configuration

log = logging.getLogger("lifeline.worker")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


async def purge_idempotency_keys(ctx: AppContext) -> int:
    """Idempotency answers older than their lifetime go; → how many."""
    return await run_unit_of_work(
        ctx.sessionmaker, ctx.after_commit, lambda db: idempotency.purge_expired(db=db)
    )


async def run(settings: Settings, *, once: bool = False) -> None:
    ctx = AppContext.create(settings)
    relay = install(ctx)
    integrations = install_integrations(ctx)
    warn_about_configuration(ctx)
    closers: list[Callable[[], Awaitable[None]]] = []
    if settings.redis_url:
        # Through Redis this process reaches every server's live connections: step events
        # are pushed and presence (push rows, offline_only email) is the servers' own.
        from fastapi import FastAPI

        from lifeline.realtime.plugin import realtime_plugin

        # A plugin's signature takes an app; this process serves none.
        closers.append(await realtime_plugin(FastAPI(), ctx))
    else:
        log.info("no LIFELINE_REDIS_URL: this worker sees no live connections (push = offline)")
        covered = "the event log, replayed when a stream reconnects"
        ctx.after_commit.leave(PublishEvent, covered_by=covered)
        ctx.after_commit.leave(DropConnections, covered_by="the servers' credential check")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started: sweeping every %ss%s",
        settings.sweep_interval_seconds,
        " (once)" if once else "",
    )
    sweeps = 0
    try:
        while not stop.is_set():
            sweeps += 1
            before = relay.totals.copy()
            try:
                report = await sweep_once(ctx=ctx, relay=relay)
                sent_on = await integrations.sweep()
                purged = await purge_idempotency_keys(ctx)
                # Step waves go out through the after-commit dispatcher: count them too.
                await ctx.tasks.drain()
                done = relay.totals.minus(before)
                log.info(
                    "sweep %d: %s, %s; webhooks and Slack: %s; expired idempotency keys: %d",
                    sweeps,
                    report.steps,
                    done,
                    sent_on,
                    purged,
                )
            except Exception:
                log.exception("sweep %d failed", sweeps)
            if once:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.sweep_interval_seconds)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await ctx.tasks.drain(wait_seconds=10)
        for close in reversed(closers):
            await close()
        await relay.aclose()
        await integrations.aclose()
        await ctx.close()
        log.info("worker stopped after %d sweeps", sweeps)


def main(settings: Settings, *, once: bool = False) -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    asyncio.run(run(settings, once=once))
