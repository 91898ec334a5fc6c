"""Accounts, users and tokens: the rules. Callers own the transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from lifeline import after_commit
from lifeline.accounts import passwords, security
from lifeline.accounts.models import (
    Account,
    ApiToken,
    EmailPreference,
    Role,
    User,
    WebSession,
    is_manager,
)
from lifeline.accounts.schemas import (
    MAX_EMAIL_LENGTH,
    MAX_NAME_LENGTH,
    clean_name,
    normalise_email,
    storable_text,
)
from lifeline.db import utcnow
from lifeline.errors import Conflict, Forbidden, NotFound, Unauthorized, Unprocessable
from lifeline.pagination import keyset, page

# last_used_at is written at most this often per token, so reads stay cheap.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)
# Credentials checked per query when live streams re-check theirs.
_CHECK_BATCH = 500


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


async def list_accounts(
    *, db: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[Account], str | None]:
    """Every account, oldest first: for operators (the command line), never for a member."""
    query = keyset(
        select(Account),
        Account.created_at,
        Account.id,
        cursor=cursor,
        limit=limit,
        descending=False,
    )
    rows = (await db.scalars(query)).all()
    return page(rows, limit, lambda a: (a.created_at, a.id))


async def member_counts(*, db: AsyncSession, account_ids: list[str]) -> dict[str, int]:
    """Active members per account, for the accounts named."""
    if not account_ids:
        return {}
    rows = await db.execute(
        select(User.account_id, func.count())
        .where(User.account_id.in_(account_ids), User.deleted_at.is_(None))
        .group_by(User.account_id)
    )
    return {account_id: int(count) for account_id, count in rows.all()}


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


def _name_from_email(email: str) -> str:
    try:
        return clean_name(email.split("@")[0])[:MAX_NAME_LENGTH]
    except ValueError:
        return "member"


def _checked_name(name: str) -> str:
    """A display name, whoever sets it: no control, bidi or zero-width characters."""
    try:
        return _checked_text("name", clean_name(name), MAX_NAME_LENGTH)
    except ValueError as exc:
        raise Unprocessable(f"name: {exc}") from exc


def checked_password(password: str) -> str:
    """The rules of :mod:`passwords`, for callers that don't pass through the schemas."""
    problem = passwords.password_problem(password)
    if problem is not None:
        raise Unprocessable(f"password: {problem}")
    return password


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
        name = _checked_name(name)
    if password is not None:
        checked_password(password)
    user = User(
        account_id=account_id,
        email=email,
        name=name or _name_from_email(email),
        role=role,
        # Those reached live aren't emailed as well (the push already told them).
        email_notifications=EmailPreference.OFFLINE_ONLY,
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


# The bearer token's lookup, built once: the user's columns and the token's id and last use,
# as plain columns (no ORM objects to load for every request).
_USER_COLUMNS = tuple(User.__table__.c)
_TOKEN_USER = (
    select(
        *_USER_COLUMNS,
        ApiToken.id.label("token_id"),
        ApiToken.last_used_at.label("token_last_used_at"),
    )
    .join(ApiToken, ApiToken.user_id == User.id)
    .where(
        ApiToken.token_hash == bindparam("token_hash"),
        ApiToken.revoked_at.is_(None),
        User.deleted_at.is_(None),
    )
)
_TOUCH_TOKEN = (
    update(ApiToken)
    .where(ApiToken.id == bindparam("token_id"))
    .values(last_used_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)


async def authenticate_token(
    *, db: AsyncSession | AsyncConnection, secret: str
) -> tuple[User, str]:
    """The active user behind a bearer secret, and the token's id; or Unauthorized.

    The user is detached (in no session), as if loaded and then let go: the caller merges it
    into its unit of work (``merge(user, load=False)``) without reading it again. ``db`` may
    be a connection outside any transaction (one round trip on PostgreSQL)."""
    if not secret.startswith(security.TOKEN_PREFIX):
        raise Unauthorized("Invalid or revoked API token")
    row = (await db.execute(_TOKEN_USER, {"token_hash": security.hash_secret(secret)})).first()
    if row is None:
        raise Unauthorized("Invalid or revoked API token")
    user = User(**{column.key: row._mapping[column] for column in _USER_COLUMNS})
    make_transient_to_detached(user)
    now = utcnow()
    last_used_at: datetime | None = row.token_last_used_at
    if last_used_at is None or now - last_used_at > TOKEN_TOUCH_INTERVAL:
        await db.execute(_TOUCH_TOKEN, {"token_id": row.token_id, "now": now})
    return user, row.token_id


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
    keep_web_session_id: str | None = None,
) -> User:
    """The caller's own profile; a password change signs out their other web sessions."""
    if name is not None:
        user.name = _checked_name(name)
    if email_notifications is not None:
        user.email_notifications = email_notifications
    if password is not None:
        if user.password_hash and not security.verify_password(
            user.password_hash, current_password or ""
        ):
            raise Forbidden("current_password: does not match")
        checked_password(password)
        user.password_hash = security.hash_password(password)
        # A new password signs out every other browser, and closes what they had open.
        await revoke_web_sessions(db=db, user_id=user.id, keep_web_session_id=keep_web_session_id)
    await db.flush()
    return user


async def revoke_web_sessions(
    *, db: AsyncSession, user_id: str, keep_web_session_id: str | None = None
) -> list[str]:
    """Sign the user out of every web session (but ``keep_web_session_id``); their live
    streams close, in every process, once this commits. Returns the revoked ids."""
    query = select(WebSession.id).where(
        WebSession.user_id == user_id, WebSession.revoked_at.is_(None)
    )
    if keep_web_session_id is not None:
        query = query.where(WebSession.id != keep_web_session_id)
    revoked = list((await db.scalars(query)).all())
    if not revoked:
        return revoked
    await db.execute(
        update(WebSession).where(WebSession.id.in_(revoked)).values(revoked_at=utcnow())
    )
    for web_session_id in revoked:
        after_commit.record(
            db, after_commit.DropConnections(user_id=user_id, web_session_id=web_session_id)
        )
    return revoked


async def live_credentials(
    *, db: AsyncSession, token_ids: set[str], web_session_ids: set[str]
) -> set[str]:
    """Of these token and web session ids, those that still authenticate someone right now.

    Live streams ask this on their heartbeat, so a revocation made where no broker reaches
    (the command line without Redis) still closes them.
    """
    valid: set[str] = set()
    now = utcnow()
    tokens, sessions = sorted(token_ids), sorted(web_session_ids)
    for start in range(0, len(tokens), _CHECK_BATCH):
        valid.update(
            (
                await db.scalars(
                    select(ApiToken.id)
                    .join(User, User.id == ApiToken.user_id)
                    .where(
                        ApiToken.id.in_(tokens[start : start + _CHECK_BATCH]),
                        ApiToken.revoked_at.is_(None),
                        User.deleted_at.is_(None),
                    )
                )
            ).all()
        )
    for start in range(0, len(sessions), _CHECK_BATCH):
        valid.update(
            (
                await db.scalars(
                    select(WebSession.id)
                    .join(User, User.id == WebSession.user_id)
                    .where(
                        WebSession.id.in_(sessions[start : start + _CHECK_BATCH]),
                        WebSession.revoked_at.is_(None),
                        WebSession.expires_at > now,
                        User.deleted_at.is_(None),
                    )
                )
            ).all()
        )
    return valid


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
    if not is_manager(actor):
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
    if not is_manager(actor):
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
    ``FOR NO KEY UPDATE``, not ``FOR UPDATE``: it still excludes another role change, but not
    the key-share locks that inserting rows referencing the account take (a claim's event),
    which would otherwise wait on this lock while holding what we wait for: a deadlock.
    """
    await db.execute(
        select(Account.id).where(Account.id == actor.account_id).with_for_update(key_share=True)
    )
    await db.refresh(actor)
    if actor.deleted_at is not None:
        raise Unauthorized("Invalid or revoked API token")


async def _lock_member(db: AsyncSession, account_id: str, user_id: str) -> User:
    """The member's row, locked and re-read: a claim in flight (which share-locks it) finishes
    first and is then seen by the release that follows a demotion or removal."""
    user = await db.scalar(
        select(User)
        .where(User.id == user_id, User.account_id == account_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if user is None:
        raise NotFound("User not found")
    return user


async def update_user(
    *, db: AsyncSession, actor: User, user_id: str, role: Role | None, name: str | None
) -> User:
    """The account's side of a role change, under the team's and the member's locks; what a
    demoted member held is released by :func:`lifeline.members.service.update_member`."""
    await _lock_team(db, actor)
    target = await _lock_member(db, actor.account_id, user_id)
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
        target.name = _checked_name(name)
    await db.flush()
    return target


async def soft_delete_user(*, db: AsyncSession, actor: User, user_id: str) -> User:
    """Soft delete: the user can no longer authenticate and gets nothing from now on.

    What they held is released by :func:`lifeline.members.service.remove_member`."""
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
    # Credentials before the user row: a request of theirs in flight has touched its token
    # (last_used_at) before it share-locks the user row to claim, so this order can't deadlock.
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
    target = await _lock_member(db, actor.account_id, user_id)
    if target.deleted_at is not None:
        raise NotFound("User not found")
    target.deleted_at = now
    await db.flush()
    after_commit.record(db, after_commit.DropConnections(user_id=target.id))
    return target
