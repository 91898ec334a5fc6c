"""The web app: server-rendered pages, their static assets, and sign-in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from lifeline.context import AppContext
from lifeline.web.analytics_page import router as analytics_pages
from lifeline.web.auth import http_error_page
from lifeline.web.auth import router as sign_in_pages
from lifeline.web.headers import SecurityHeaders
from lifeline.web.integrations_page import router as integrations_pages
from lifeline.web.router import router as session_pages
from lifeline.web.settings_page import router as settings_pages
from lifeline.web.templating import STATIC_DIR
from lifeline.web.throttle import LoginThrottle, MemoryAttempts, RedisAttempts


def web_router() -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    pages.include_router(sign_in_pages)
    pages.include_router(session_pages)
    pages.include_router(analytics_pages)
    pages.include_router(settings_pages)
    pages.include_router(integrations_pages)
    return pages


def install(app: FastAPI, *, https: bool) -> None:
    """Pages, ``/static`` and the security headers, on an app being built."""
    app.include_router(web_router())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeaders, https=https)
    app.add_exception_handler(StarletteHTTPException, http_error_page)


async def web_plugin(_app: FastAPI, ctx: AppContext) -> Callable[[], Awaitable[None]]:
    """Start-up: the sign-in throttle, shared through Redis when the processes share one."""
    redis_url = ctx.settings.redis_url
    store = RedisAttempts.from_url(redis_url) if redis_url else MemoryAttempts()
    ctx.login_throttle = LoginThrottle(store)
    return store.close
