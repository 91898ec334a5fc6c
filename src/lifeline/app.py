"""The ASGI application: routers, the one error handler, and the process lifespan."""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp

from lifeline import __version__, metrics, unavailable
from lifeline.accounts.router import router as accounts_router
from lifeline.agents import http as agents_http
from lifeline.ai_sessions.router import router as ai_sessions_router
from lifeline.analytics.router import router as analytics_router
from lifeline.config import Settings, get_settings
from lifeline.context import AppContext
from lifeline.error_schemas import API_ERROR_RESPONSES
from lifeline.errors import LifelineError
from lifeline.handoffs.router import queue_router
from lifeline.handoffs.router import router as handoffs_router
from lifeline.integrations.plugin import integrations_plugin
from lifeline.integrations.router import router as integrations_router
from lifeline.integrations.slack_router import config_router as slack_config_router
from lifeline.integrations.slack_router import interactions_router as slack_interactions_router
from lifeline.middleware import (
    BodySizeLimitMiddleware,
    HeadAsGetMiddleware,
    NulInUrlMiddleware,
    RequestIdMiddleware,
    RetryTransientMiddleware,
)
from lifeline.notifications import demo_mail
from lifeline.notifications.plugin import notifications_plugin
from lifeline.notifications.router import router as notifications_router
from lifeline.policies.router import router as policies_router
from lifeline.realtime.fast_path import WebSocketFastPath
from lifeline.realtime.plugin import realtime_plugin
from lifeline.realtime.router import WEBSOCKET_PATH, websocket_stream
from lifeline.realtime.router import router as realtime_router
from lifeline.web import api_docs, web_plugin
from lifeline.web import install as install_web

log = logging.getLogger(__name__)

SECRET_FIELDS = frozenset({"password", "current_password", "token", "secret"})


def _echoable(error: dict[str, Any]) -> dict[str, Any]:
    """A validation error safe to send back: secrets are never echoed, bytes become text."""
    if any(str(part) in SECRET_FIELDS for part in error.get("loc", ())):
        return {key: value for key, value in error.items() if key not in ("input", "ctx")}
    if isinstance(error.get("input"), bytes):
        return {**error, "input": error["input"].decode("utf-8", "replace")}
    return error


class LifelineApp(FastAPI):
    """FastAPI, with the live WebSocket (``/api/v1/ws``) and the MCP endpoint (``/mcp``) served
    ahead of everything else.

    A socket lives for hours, an agent's wait up to 50 s, and one process holds thousands of
    each: each HTTP middleware (and Starlette's own error middleware) would keep a frame alive
    per socket or wait while doing nothing for it, so :class:`WebSocketFastPath` and
    :class:`~lifeline.agents.http.McpFastPath` hand them to their endpoints and pass all else
    to the usual stack (bench/RESULTS.md: 40 → 29 KiB per idle socket).
    """

    mcp: agents_http.McpEndpoint | None = None

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        if self.mcp is not None:
            settings: Settings = self.state.settings
            app = agents_http.McpFastPath(
                app,
                mcp=self.mcp,
                max_body_bytes=settings.max_body_bytes,
                https=settings.base_url.startswith("https://"),
            )
        return WebSocketFastPath(app, path=WEBSOCKET_PATH, endpoint=websocket_stream)


# Start-up and shutdown steps that other layers (notifications, real-time, web) contribute.
Plugin = Callable[[FastAPI, AppContext], Awaitable[Callable[[], Awaitable[None]] | None]]


def api_router() -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=API_ERROR_RESPONSES)
    api.include_router(accounts_router)
    # The queue first: "/ai-sessions/queue" must never be read as a session id.
    api.include_router(queue_router)
    api.include_router(ai_sessions_router)
    api.include_router(handoffs_router)
    # Further layers add their routers below, one line each.
    api.include_router(realtime_router)
    api.include_router(analytics_router)
    api.include_router(notifications_router)
    api.include_router(integrations_router)
    api.include_router(slack_config_router)
    api.include_router(policies_router)
    return api


def settle_heap() -> None:
    """Leave what start-up built out of the cycle collector's work from now on.

    A started server holds a few hundred thousand long-lived objects (mappers, routes, schemas,
    compiled statements), and every full collection walked all of them again: under a burst of
    Pick Ups that was about a quarter of the server's CPU. Frozen objects are still freed by
    reference counting; only the cycle collector leaves them alone.
    """
    gc.collect()
    gc.freeze()


def create_app(
    settings: Settings | None = None,
    *,
    plugins: list[Plugin] | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """The application. ``freeze_heap`` (the served app, :mod:`lifeline.asgi`): once started,
    :func:`settle_heap`."""
    settings = settings or get_settings()
    all_plugins = list(plugins) if plugins is not None else default_plugins()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = AppContext.create(settings)
        app.state.ctx = ctx
        closers = []
        for plugin in all_plugins:
            closer = await plugin(app, ctx)
            if closer is not None:
                closers.append(closer)
        # The MCP endpoint is a mounted app: its own lifespan never runs, so its session
        # manager runs from here, for the life of the process.
        closers.append(await agents_http.start(mcp_endpoint))
        if freeze_heap:
            settle_heap()
        try:
            yield
        finally:
            for closer in reversed(closers):
                try:
                    await closer()
                except Exception:
                    log.exception("shutdown step failed")
            await ctx.close()

    # /docs and /redoc are served by lifeline.web.api_docs, from vendored assets.
    app = LifelineApp(
        title="Lifeline", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.settings = settings

    @app.exception_handler(LifelineError)
    async def _domain_error(_request: Request, exc: LifelineError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid_input(_request: Request, exc: RequestValidationError) -> Response:
        # ASCII-escaped: the echoed input may hold a lone surrogate that UTF-8 can't encode;
        # a body that isn't JSON at all is echoed as bytes that may not even be UTF-8.
        errors = [_echoable(error) for error in exc.errors()]
        body = json.dumps({"detail": jsonable_encoder(errors)}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(IntegrityError)
    async def _integrity_error(_request: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("integrity error: %s", exc.orig)
        return JSONResponse({"detail": "Conflicts with the current state"}, status_code=409)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> JSONResponse:
        ctx: AppContext = request.app.state.ctx
        try:
            async with ctx.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    unavailable.install(app)

    app.include_router(api_router())
    app.include_router(metrics.router)
    app.include_router(slack_interactions_router)
    if demo_mail.serves_demo_mail(settings):
        app.include_router(demo_mail.router)
    api_docs.install(app)
    install_web(app, https=settings.base_url.startswith("https://"))
    mcp_endpoint = agents_http.install(app, settings)
    app.mcp = mcp_endpoint
    app.state.mcp = mcp_endpoint.server
    # Inside the body cap: a retried request's body is bounded before it is kept for replay.
    app.add_middleware(RetryTransientMiddleware)
    # Added last, so outermost: even a 413 carries its X-Request-ID.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(NulInUrlMiddleware)
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(RequestIdMiddleware)
    return app


def default_plugins() -> list[Plugin]:
    """The layers a full server runs; tests may pass their own list."""
    return [notifications_plugin, integrations_plugin, realtime_plugin, web_plugin]
