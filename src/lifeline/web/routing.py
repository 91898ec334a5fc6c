"""Pages answer in HTML: domain errors become error pages, a missing sign-in a redirect."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError

from lifeline.accounts.schemas import storable_text
from lifeline.errors import LifelineError
from lifeline.web.templating import plain_redirect, redirect, render

log = logging.getLogger(__name__)

TITLES = {
    405: "Not found",
    400: "That request didn't work",
    403: "Not allowed",
    404: "Not found",
    409: "That changed in the meantime",
    422: "Some fields need another look",
    429: "Slow down",
}


FUNCTION_STACK = "fastapi_function_astack"


@dataclass(frozen=True)
class PageUser:
    """Who a page is for, as the top bar shows them: a plain copy that outlives the
    request's database session (an error page renders after it has rolled back)."""

    id: str
    name: str
    role: str
    csrf_token: str | None


def remember_page_user(request: Request, user: PageUser) -> None:
    request.state.page_user = user


def page_user(request: Request) -> PageUser | None:
    user = getattr(request.state, "page_user", None)
    return user if isinstance(user, PageUser) else None


class SignInRequired(Exception):
    """No valid web session: the page sends the browser to the sign-in form."""


class Bounce(Exception):
    """Back to a page with a message, after the request's transaction has rolled back.

    A form post that meets a domain error (a lost race, a duplicate email) raises this instead
    of returning a redirect itself, so nothing it wrote before the error is ever committed.
    """

    def __init__(self, url: str, *, error: str) -> None:
        super().__init__(error)
        self.url = url
        self.error = error


def local_path(value: str | None, default: str = "/") -> str:
    """``value`` when it is a path on this site; never ``//evil.example`` or ``https://…``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    return value


def login_url(request: Request) -> str:
    """The sign-in page, then back to this page (a form post's URL is no page to return to)."""
    if request.method != "GET" or request.url.path == "/":
        return "/login"
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    return "/login?next=" + quote(target, safe="/")


def _field_names(exc: RequestValidationError | ValidationError) -> list[str]:
    names = []
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path")]
        names.append(".".join(loc) or "request")
    return sorted(set(names))


def error_page(
    request: Request,
    status_code: int,
    detail: str,
    *,
    user: PageUser | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An HTML error page, with the navigation when someone is signed in."""
    user = user or page_user(request)
    return render(
        request,
        "error.html",
        {
            "title": TITLES.get(status_code, "Something went wrong"),
            "detail": detail,
            "me": user,
            "csrf_token": user.csrf_token if user else None,
        },
        status_code=status_code,
        headers=headers,
    )


def wants_html(request: Request) -> bool:
    """A browser asking for a page (not the API, not an asset, not a script's fetch)."""
    path = request.url.path
    if path.startswith(("/api/", "/static/")):
        return False
    return "text/html" in request.headers.get("accept", "")


async def _closing_dependencies_first(
    handler: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
) -> Response:
    """Run ``handler`` with its function-scoped dependencies closed inside this call.

    FastAPI closes them around the whole route handler, so an error turned into a page here
    would reach the unit of work as a success and commit half a change. Giving the handler its
    own exit stack (the scope key FastAPI itself swaps the same way) closes the unit of work with
    the error still in flight: it rolls back, and only then is the error rendered.
    """
    scope = request.scope
    outer = scope.get(FUNCTION_STACK)
    try:
        async with AsyncExitStack() as stack:
            scope[FUNCTION_STACK] = stack
            return await handler(request)
    finally:
        scope[FUNCTION_STACK] = outer


FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def _unstorable_form_fields(request: Request) -> list[str]:
    """Names of posted form fields holding text that can't be stored (a NUL character)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if request.method != "POST" or content_type not in FORM_TYPES:
        return []
    try:
        form = await request.form()  # parsed once: the route's own Form() fields reuse it
    except Exception:  # a malformed body is the route's own 4xx to give
        return []
    return sorted(
        {
            key if storable_text(key) else "request"
            for key, value in form.multi_items()
            if not storable_text(key) or (isinstance(value, str) and not storable_text(value))
        }
    )


class PageRoute(APIRoute):
    """An APIRoute whose failures are rendered for people, not for API clients."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            unstorable = await _unstorable_form_fields(request)
            if unstorable:
                # Before anything reads the form (sign-in included): PostgreSQL can't store a
                # NUL, and the API refuses one with a 422 as well.
                return error_page(request, 422, f"Check these fields: {', '.join(unstorable)}.")
            try:
                return await _closing_dependencies_first(handler, request)
            except SignInRequired:
                return plain_redirect(login_url(request))
            except Bounce as exc:
                return redirect(request, exc.url, error=exc.error)
            except LifelineError as exc:
                return error_page(request, exc.status_code, exc.detail)
            except (RequestValidationError, ValidationError) as exc:
                # A form field the route or a service schema refused: name it, change nothing.
                fields = ", ".join(_field_names(exc))
                return error_page(request, 422, f"Check these fields: {fields}.")

        return page_handler
