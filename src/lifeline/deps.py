"""FastAPI dependencies: the request's unit of work, the caller, and role gates."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts import service as accounts
from lifeline.accounts.models import MANAGER_ROLES, SENIOR_ROLES, Role, User
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.errors import Forbidden, Unauthorized

SESSION_COOKIE = "lifeline_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[AppContext, Depends(get_context)]


async def get_db(ctx: ContextDep) -> AsyncIterator[AsyncSession]:
    # scope="function" below: commit happens before the response is sent, so a failed commit
    # is an error answer, never a 201 for something that did not persist.
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_db, scope="function")]


@dataclass(frozen=True)
class Principal:
    user: User
    token_id: str | None = None
    web_session_id: str | None = None
    csrf_token: str | None = None


def bearer_secret(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return secret.strip()


async def authenticate(request: Request, db: AsyncSession) -> Principal:
    """Bearer token first, else the web session cookie (unsafe methods need the CSRF header)."""
    secret = bearer_secret(request)
    if secret is not None:
        user, token = await accounts.authenticate_token(db=db, secret=secret)
        return Principal(user=user, token_id=token.id)
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        user, web_session = await accounts.authenticate_web_session(db=db, secret=cookie)
        if request.method not in SAFE_METHODS and request.headers.get(CSRF_HEADER) != (
            web_session.csrf_token
        ):
            raise Forbidden("CSRF token missing or invalid")
        return Principal(
            user=user, web_session_id=web_session.id, csrf_token=web_session.csrf_token
        )
    raise Unauthorized("Authentication required")


async def get_principal(request: Request, db: SessionDep) -> Principal:
    principal = await authenticate(request, db)
    request.state.user_id = principal.user.id
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_current_user(principal: PrincipalDep) -> User:
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_engineer_or_admin(user: CurrentUser) -> User:
    if Role(user.role) not in SENIOR_ROLES:
        raise Forbidden("Engineer or admin access required")
    return user


async def require_admin(user: CurrentUser) -> User:
    if Role(user.role) not in MANAGER_ROLES:
        raise Forbidden("Admin or owner access required")
    return user


SeniorUser = Annotated[User, Depends(require_engineer_or_admin)]
AdminUser = Annotated[User, Depends(require_admin)]


async def page_params(
    limit: Annotated[int, Query(ge=1, le=100, description="page size, at most 100")] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> tuple[int, str | None]:
    return limit, cursor


PageParams = Annotated[tuple[int, str | None], Depends(page_params)]


# Creating routes take this header: a retry with the same key gets the first answer back.
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID); retries with the same key return the first "
        "answer and create nothing twice.",
    ),
]
