"""Cookie sign-in and sign-out, the signed-in page dependencies, and form CSRF checks.

The session cookie is HttpOnly, SameSite=Lax and Secure under an https base URL. Every form
post carries the web session's CSRF token (the sign-in form a pre-session one) and is refused
without it.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.exception_handlers import http_exception_handler
from itsdangerous import BadSignature, URLSafeSerializer
from starlette.exceptions import HTTPException as StarletteHTTPException

from lifeline.accounts import service as accounts
from lifeline.accounts import sign_in
from lifeline.context import AppContext
from lifeline.deps import SESSION_COOKIE, ContextDep, Principal, SessionDep
from lifeline.errors import Forbidden, Unauthorized
from lifeline.web.routing import (
    PageRoute,
    PageUser,
    SignInRequired,
    error_page,
    local_path,
    remember_page_user,
    wants_html,
)
from lifeline.web.templating import redirect, render
from lifeline.web.throttle import LoginThrottle, MemoryAttempts

LOGIN_COOKIE = "lifeline_login"
# Set on a successful sign-in: this browser has signed in to this account before.
DEVICE_COOKIE = "lifeline_device"
DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600
CSRF_FIELD = "csrf_token"
BAD_CREDENTIALS = "Email or password is incorrect."

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _secure(request: Request) -> bool:
    return bool(request.app.state.settings.base_url.startswith("https://"))


def _secret_key(request: Request) -> str:
    return str(request.app.state.settings.secret_key)


def login_throttle(ctx: AppContext) -> LoginThrottle:
    if ctx.login_throttle is None:
        ctx.login_throttle = LoginThrottle(MemoryAttempts())
    return ctx.login_throttle


async def get_web_principal(request: Request, db: SessionDep) -> Principal:
    """The signed-in person behind the session cookie, or a redirect to the sign-in page."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or not sign_in.is_well_formed(cookie, secret_key=_secret_key(request)):
        raise SignInRequired
    try:
        user, web_session = await accounts.authenticate_web_session(db=db, secret=cookie)
    except Unauthorized as exc:
        raise SignInRequired from exc
    request.state.user_id = user.id
    remember_page_user(
        request, PageUser(user.id, user.name, str(user.role), web_session.csrf_token)
    )
    return Principal(user=user, web_session_id=web_session.id, csrf_token=web_session.csrf_token)


async def signed_in_page_user(request: Request) -> PageUser | None:
    """Who is signed in, for a page rendered outside any route (an unknown path's 404)."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or not sign_in.is_well_formed(cookie, secret_key=_secret_key(request)):
        return None
    ctx: AppContext = request.app.state.ctx
    async with ctx.sessionmaker() as db:
        try:
            user, web_session = await accounts.authenticate_web_session(db=db, secret=cookie)
        except Unauthorized:
            return None
        return PageUser(user.id, user.name, str(user.role), web_session.csrf_token)


async def http_error_page(request: Request, exc: Exception) -> Response:
    """Unknown paths and wrong methods: a page with the navigation for browsers, JSON for
    everything else (the API's clients, scripts' fetches)."""
    assert isinstance(exc, StarletteHTTPException)
    if not wants_html(request):
        return await http_exception_handler(request, exc)
    detail = (
        "There is no page at this address. It may have moved, or the link is mistyped."
        if exc.status_code in (404, 405)
        else str(exc.detail)
    )
    return error_page(
        request,
        exc.status_code,
        detail,
        user=await signed_in_page_user(request),
        headers=dict(exc.headers or {}),
    )


WebPrincipal = Annotated[Principal, Depends(get_web_principal)]


async def checked_form_post(request: Request, principal: WebPrincipal) -> Principal:
    """A form post from a signed-in person, with the CSRF token of their own session."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    expected = principal.csrf_token or ""
    if not isinstance(token, str) or not secrets.compare_digest(token, expected):
        raise Forbidden("CSRF token missing or invalid")
    return principal


FormPrincipal = Annotated[Principal, Depends(checked_form_post)]


# Sign-in forms: a double-submit token, so another site can't sign a browser into its account.
def _login_serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(_secret_key(request), salt="lifeline.login-form")


def _device_serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(_secret_key(request), salt="lifeline.device")


def trusted_device(request: Request, email: str) -> str | None:
    """The device id of a browser that signed in as ``email`` before, from its signed cookie."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return None
    try:
        value = _device_serializer(request).loads(raw)
    except BadSignature:
        return None
    if not isinstance(value, dict) or value.get("email") != email.strip().lower():
        return None
    device = value.get("device")
    return device if isinstance(device, str) else None


def _login_form(
    request: Request,
    *,
    email: str = "",
    next_url: str = "/",
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        {
            "email": email,
            "next_url": next_url,
            "login_error": error,
            "login_token": _login_serializer(request).dumps(nonce),
            **_demo_logins(request),
        },
        status_code=status_code,
        headers=headers,
    )
    response.set_cookie(
        LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="lax", secure=_secure(request)
    )
    return response


def _demo_logins(request: Request) -> dict[str, Any]:
    """In the demo, the sign-in page lists the seeded people (their password is public)."""
    if request.app.state.settings.env != "demo":
        return {}
    from lifeline import demo

    return {"demo_logins": demo.PEOPLE, "demo_password": demo.DEMO_PASSWORD}


def _client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/login")
async def login_page(request: Request, db: SessionDep, next: str | None = None) -> Response:
    try:
        await get_web_principal(request, db)
    except SignInRequired:
        return _login_form(request, next_url=local_path(next))
    return redirect(request, local_path(next))  # already signed in


@router.post("/login")
async def login_submit(
    request: Request,
    db: SessionDep,
    ctx: ContextDep,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    next_url = local_path(next)
    email = email.strip()[:320]
    nonce = request.cookies.get(LOGIN_COOKIE)
    try:
        form_nonce = _login_serializer(request).loads(csrf_token)
    except BadSignature:
        form_nonce = None
    if not nonce or form_nonce != nonce:
        raise Forbidden("The sign-in form expired or came from elsewhere; reload it and try again")
    if not email or not password:
        return _login_form(
            request,
            email=email,
            next_url=next_url,
            error="Enter your email and password.",
            status_code=400,
        )

    throttle = login_throttle(ctx)
    address = _client_address(request)
    device = trusted_device(request, email)
    wait = await throttle.retry_after(email=email, address=address, device=device)
    if wait:
        return _too_many(request, email, next_url, wait)
    try:
        user = await sign_in.check_password(db=db, email=email, password=password[:1000])
    except sign_in.InvalidCredentials:
        wait = await throttle.failed(email=email, address=address, device=device)
        if wait:
            return _too_many(request, email, next_url, wait)
        return _login_form(
            request, email=email, next_url=next_url, error=BAD_CREDENTIALS, status_code=401
        )
    await throttle.succeeded(email=email, device=device)
    opened = await sign_in.open_session(db=db, user=user, secret_key=_secret_key(request))
    response = redirect(request, next_url)
    response.set_cookie(
        SESSION_COOKIE,
        opened.cookie_value,
        max_age=int(sign_in.SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(LOGIN_COOKIE)
    response.set_cookie(
        DEVICE_COOKIE,
        _device_serializer(request).dumps(
            {"email": user.email, "device": device or secrets.token_urlsafe(16)}
        ),
        max_age=DEVICE_COOKIE_MAX_AGE,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/login",
    )
    return response


def _too_many(request: Request, email: str, next_url: str, wait: int) -> Response:
    return _login_form(
        request,
        email=email,
        next_url=next_url,
        error=f"Too many sign-in attempts. Try again in {wait} seconds.",
        status_code=429,
        headers={"Retry-After": str(wait)},
    )


@router.post("/logout")
async def logout(request: Request, db: SessionDep, principal: FormPrincipal) -> Response:
    assert principal.web_session_id is not None
    await sign_in.revoke_session(
        db=db, web_session_id=principal.web_session_id, user_id=principal.user.id
    )
    response = redirect(request, "/login", notice="You are signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
