"""Browser sign-in sessions: check a password, open a web session, revoke it.

The cookie holds a random secret signed with the app's secret key; the table keeps only the
SHA-256 of the whole cookie value, so the API's cookie check (``deps.authenticate``) and the
pages agree on one lookup. Callers own the transaction.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import timedelta

from itsdangerous import BadSignature, Signer
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.accounts import security
from lifeline.accounts import service as accounts
from lifeline.accounts.models import User, WebSession
from lifeline.db import utcnow
from lifeline.errors import NotFound

SESSION_LIFETIME = timedelta(days=14)
_SALT = "lifeline.web-session"


class InvalidCredentials(Exception):
    """Email or password wrong; deliberately silent about which."""


@dataclass(frozen=True)
class OpenedSession:
    web_session: WebSession
    cookie_value: str


def _signer(secret_key: str) -> Signer:
    return Signer(secret_key, salt=_SALT)


def is_well_formed(cookie_value: str, *, secret_key: str) -> bool:
    """True when the cookie carries our signature (a cheap filter before any lookup)."""
    try:
        _signer(secret_key).unsign(cookie_value)
    except BadSignature:
        return False
    return True


async def check_password(*, db: AsyncSession, email: str, password: str) -> User:
    """The active user with this email and password, or InvalidCredentials.

    An unknown email costs the same hashing work as a known one, so timing tells nothing.
    """
    user = await db.scalar(
        select(User).where(User.email == email.strip().lower(), User.deleted_at.is_(None))
    )
    stored = user.password_hash if user is not None else None
    # Argon2 takes a tenth of a second of CPU: off the event loop, so other requests go on.
    ok = await asyncio.to_thread(security.verify_password, stored, password)
    if user is None or not ok:
        raise InvalidCredentials
    return user


async def open_session(*, db: AsyncSession, user: User, secret_key: str) -> OpenedSession:
    cookie_value = _signer(secret_key).sign(secrets.token_urlsafe(32)).decode()
    now = utcnow()
    web_session = WebSession(
        user_id=user.id,
        token_hash=security.hash_secret(cookie_value),
        csrf_token=secrets.token_urlsafe(32),
        created_at=now,
        expires_at=now + SESSION_LIFETIME,
    )
    db.add(web_session)
    await db.flush()
    return OpenedSession(web_session, cookie_value)


async def revoke_session(*, db: AsyncSession, web_session_id: str, user_id: str) -> None:
    """Sign out: the cookie stops working everywhere, and live streams opened with it close."""
    await db.execute(
        update(WebSession)
        .where(WebSession.id == web_session_id, WebSession.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    after_commit.record(
        db, after_commit.DropConnections(user_id=user_id, web_session_id=web_session_id)
    )


async def set_password(*, db: AsyncSession, email: str, password: str) -> User:
    """An operator sets someone's password: every web session of theirs is signed out."""
    user = await db.scalar(
        select(User).where(User.email == email.strip().lower(), User.deleted_at.is_(None))
    )
    if user is None:
        raise NotFound(f"No active user with the email {email.strip().lower()}")
    accounts.checked_password(password)
    user.password_hash = await asyncio.to_thread(security.hash_password, password)
    await accounts.revoke_web_sessions(db=db, user_id=user.id)
    await db.flush()
    return user
