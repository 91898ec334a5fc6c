"""The app ``lifeline serve`` runs, plus a clock on commits, for bench/ws_latency.py.

The wire format has no room for a commit time, so this records, per event id, the moment the
unit of work handed its after-commit intents over (right after COMMIT returned) and serves
them at ``GET /bench/commits``. Nothing else in ``app`` differs from ``lifeline.asgi:app``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI

from lifeline.after_commit import PublishEvent, SideEffect
from lifeline.app import create_app, default_plugins
from lifeline.context import AppContext
from lifeline.realtime.plugin import realtime_plugin


async def commit_clock(app: FastAPI, ctx: AppContext) -> Callable[[], Awaitable[None]] | None:
    stamps: dict[str, float] = {}
    hand_over = ctx.after_commit.run

    def run(intents: list[SideEffect]) -> None:
        now = time.time()
        for intent in intents:
            if isinstance(intent, PublishEvent):
                stamps[str(intent.event_id)] = now
        hand_over(intents)

    ctx.after_commit.run = run  # type: ignore[method-assign]

    async def commits() -> dict[str, float]:
        return stamps

    app.add_api_route("/bench/commits", commits, methods=["GET"])
    return None


app = create_app(plugins=[*default_plugins(), commit_clock])
# For attribution only: the real-time layer without the notification layer's after-commit work.
realtime_only = create_app(plugins=[realtime_plugin, commit_clock])
