"""Accounts, users and tokens: the rules. Callers own the transaction."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.accounts import security
from lifeline.accounts.models import (
    MANAGER_ROLES,
    SENIOR_ROLES,
    Account,
    ApiToken,
    EmailPreference,
    Role,
    User,
    WebSession,
)
from lifeline.accounts.schemas import (
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    normalise_email,
    storable_text,
)
from lifeline.db import utcnow
from lifeline.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from lifeline.handoffs import service as handoffs
from lifeline.pagination import keyset, page

# last_used_at is written at most this often per token, so reads stay cheap.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)


async def create_account(
    *,
    db: AsyncSession,
    name: str,
    owner_email: str,
    owner_name: str | None = None,
    owner_password: str | None = None,
) -> tuple[Account, User, str]:
    """A new tenant with its owner and the owner's first API token."""
    account = Account(name=_checked_text("name", name, MAX_NAME_LENGTH))
    db.add(account)
    await db.flush()
    owner = await create_user(
        db=db,
        account_id=account.id,
        email=owner_email,
        name=owner_name,
        role=Role.OWNER,
        password=owner_password,
    )
    _token, secret = await create_token(db=db, user=owner, name="owner bootstrap")
    return account, owner, secret


async def get_account(*, db: AsyncSession, account_id: str) -> Account:
    account = await db.get(Account, account_id)
    if account is None:
        raise NotFound("Account not found")
    return account


async def update_account(*, db: AsyncSession, account_id: str, name: str | None) -> Account:
    account = await get_account(db=db, account_id=account_id)
    if name is not None:
        account.name = name
    await db.flush()
    return account


def _checked_text(field: str, value: str, max_length: int) -> str:
    """The same rules the HTTP schemas apply, for callers that don't pass through them (CLI)."""
    value = value.strip()
    if not value or len(value) > max_length or not storable_text(value):
        raise Unprocessable(f"{field}: must be 1 to {max_length} storable characters")
    return value


def _checked_email(email: str) -> str:
    try:
        email = normalise_email(email)
    except ValueError as exc:
        raise Unprocessable(f"email: {exc}") from exc
    return _checked_text("email", email, MAX_EMAIL_LENGTH)


async def create_user(
    *,
    db: AsyncSession,
    account_id: str,
    email: str,
    name: str | None,
    role: Role,
    password: str | None = None,
) -> User:
    email = _checked_email(email)
    if name is not None:
        name = _checked_text("name", name, MAX_NAME_LENGTH)
    user = User(
        account_id=account_id,
        email=email,
        name=name or email.split("@")[0][:MAX_NAME_LENGTH],
        role=role,
        email_notifications=EmailPreference.ALWAYS,
        password_hash=security.hash_password(password) if password else None,
    )
    try:
        async with db.begin_nested():
            db.add(user)
    except IntegrityError as exc:
        raise Conflict(f"A user with the email {email} already exists") from exc
    return user


async def create_token(*, db: AsyncSession, user: User, name: str) -> tuple[ApiToken, str]:
    """A new API token; the secret is returned once and never stored."""
    secret, prefix, token_hash = security.new_api_token()
    token = ApiToken(user_id=user.id, name=name, prefix=prefix, token_hash=token_hash)
    db.add(token)
    await db.flush()
    return token, secret


async def list_tokens(
    *, db: AsyncSession, user: User, cursor: str | None, limit: int
) -> tuple[list[ApiToken], str | None]:
    query = keyset(
        select(ApiToken).where(ApiToken.user_id == user.id),
        ApiToken.created_at,
        ApiToken.id,
        cursor=cursor,
        limit=limit,
        descending=True,
    )
    rows = (await db.scalars(query)).all()
    return page(rows, limit, lambda t: (t.created_at, t.id))


async def revoke_token(*, db: AsyncSession, user: User, token_id: str) -> ApiToken:
    token = await db.scalar(
        select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user.id)
    )
    if token is None:
        raise NotFound("Token not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        await db.flush()
        after_commit.record(db, after_commit.DropConnections(user_id=user.id, token_id=token.id))
    return token


async def authenticate_token(*, db: AsyncSession, secret: str) -> tuple[User, ApiToken]:
    """The active user behind a bearer secret, or Unauthorized."""
    if not secret.startswith(security.TOKEN_PREFIX):
        raise Unauthorized("Invalid or revoked API token")
    row = (
        await db.execute(
            select(User, ApiToken)
            .join(ApiToken, ApiToken.user_id == User.id)
            .where(
                ApiToken.token_hash == security.hash_secret(secret),
                ApiToken.revoked_at.is_(None),
                User.deleted_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("Invalid or revoked API token")
    user, token = row
    now = utcnow()
    if token.last_used_at is None or now - token.last_used_at > TOKEN_TOUCH_INTERVAL:
        await db.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
    return user, token


async def authenticate_web_session(*, db: AsyncSession, secret: str) -> tuple[User, WebSession]:
    row = (
        await db.execute(
            select(User, WebSession)
            .join(WebSession, WebSession.user_id == User.id)
            .where(
                WebSession.token_hash == security.hash_secret(secret),
                WebSession.revoked_at.is_(None),
                WebSession.expires_at > utcnow(),
                User.deleted_at.is_(None),
            )
        )
    ).one_or_none()
    if row is None:
        raise Unauthorized("Not signed in")
    user, web_session = row
    return user, web_session


async def get_user(*, db: AsyncSession, account_id: str, user_id: str) -> User:
    user = await db.scalar(select(User).where(User.id == user_id, User.account_id == account_id))
    if user is None:
        raise NotFound("User not found")
    return user


async def list_users(
    *,
    db: AsyncSession,
    account_id: str,
    cursor: str | None,
    limit: int,
    include_deleted: bool = False,
) -> tuple[list[User], str | None]:
    query = select(User).where(User.account_id == account_id)
    if not include_deleted:
        query = query.where(User.deleted_at.is_(None))
    query = keyset(query, User.created_at, User.id, cursor=cursor, limit=limit, descending=False)
    rows = (await db.scalars(query)).all()
    return page(rows, limit, lambda u: (u.created_at, u.id))


async def update_me(
    *,
    db: AsyncSession,
    user: User,
    name: str | None,
    email_notifications: EmailPreference | None,
    password: str | None,
    current_password: str | None,
) -> User:
    if name is not None:
        user.name = name
    if email_notifications is not None:
        user.email_notifications = email_notifications
    if password is not None:
        if user.password_hash and not security.verify_password(
            user.password_hash, current_password or ""
        ):
            raise Forbidden("current_password: does not match")
        user.password_hash = security.hash_password(password)
    await db.flush()
    return user


async def _owner_count(db: AsyncSession, account_id: str) -> int:
    return int(
        await db.scalar(
            select(func.count())
            .select_from(User)
            .where(
                User.account_id == account_id, User.role == Role.OWNER, User.deleted_at.is_(None)
            )
        )
        or 0
    )


def _check_may_manage(actor: User, target: User, new_role: Role | None) -> None:
    if Role(actor.role) not in MANAGER_ROLES:
        raise Forbidden("Admin or owner access required")
    touches_owner = target.role == Role.OWNER or new_role == Role.OWNER
    if touches_owner and actor.role != Role.OWNER:
        raise Forbidden("Only an owner can change an owner or make one")


async def invite_user(
    *,
    db: AsyncSession,
    actor: User,
    email: str,
    name: str | None,
    role: Role,
    password: str | None,
) -> tuple[User, str]:
    """Add a member to the actor's account; returns the user and their first token's secret."""
    if Role(actor.role) not in MANAGER_ROLES:
        raise Forbidden("Admin or owner access required")
    if role == Role.OWNER and actor.role != Role.OWNER:
        raise Forbidden("Only an owner can change an owner or make one")
    user = await create_user(
        db=db, account_id=actor.account_id, email=email, name=name, role=role, password=password
    )
    _token, secret = await create_token(db=db, user=user, name="invite")
    return user, secret


async def _lock_team(db: AsyncSession, actor: User) -> None:
    """Serialise role changes and removals within an account, then re-read the actor.

    Two owners demoting each other at once must not both see "another owner remains"; the
    row lock on the account (SQLite's write lock, taken up front, does the same) makes the
    second wait and then count again. The actor's own role is re-read under the lock too.
    """
    await db.execute(select(Account.id).where(Account.id == actor.account_id).with_for_update())
    await db.refresh(actor)
    if actor.deleted_at is not None:
        raise Unauthorized("Invalid or revoked API token")


async def update_user(
    *, db: AsyncSession, actor: User, user_id: str, role: Role | None, name: str | None
) -> User:
    await _lock_team(db, actor)
    target = await get_user(db=db, account_id=actor.account_id, user_id=user_id)
    if target.deleted_at is not None:
        raise NotFound("User not found")
    _check_may_manage(actor, target, role)
    if role is not None and role != target.role:
        if target.role == Role.OWNER and await _owner_count(db, actor.account_id) <= 1:
            raise Conflict("The account's last owner can't be demoted")
        target.role = role
        # What a live connection may see depends on the role: it reconnects as the new one.
        after_commit.record(db, after_commit.DropConnections(user_id=target.id))
    if name is not None:
        target.name = name
    await db.flush()
    if Role(target.role) not in SENIOR_ROLES:
        # A viewer can't hold a pick-up (nor release or resolve it): it goes back to the team.
        await handoffs.release_claims_of(db=db, user=target)
    return target


async def soft_delete_user(*, db: AsyncSession, actor: User, user_id: str) -> User:
    """Soft delete: the user can no longer authenticate and gets nothing from now on."""
    await _lock_team(db, actor)
    target = await get_user(db=db, account_id=actor.account_id, user_id=user_id)
    if target.deleted_at is not None:
        raise NotFound("User not found")
    _check_may_manage(actor, target, None)
    if target.id == actor.id:
        raise Conflict("You can't remove yourself")
    if target.role == Role.OWNER and await _owner_count(db, actor.account_id) <= 1:
        raise Conflict("The account's last owner can't be removed")
    now = utcnow()
    target.deleted_at = now
    await db.flush()
    # Nobody gone can hold work: what they had picked up returns to the team's queue.
    await handoffs.release_claims_of(db=db, user=target)
    await db.execute(
        update(ApiToken)
        .where(ApiToken.user_id == target.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await db.execute(
        update(WebSession)
        .where(WebSession.user_id == target.id, WebSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await db.flush()
    after_commit.record(db, after_commit.DropConnections(user_id=target.id))
    return target
