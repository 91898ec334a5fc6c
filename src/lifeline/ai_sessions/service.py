"""AI sessions and transcripts: who may see and write them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, literal, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User, is_manager
from lifeline.ai_sessions.models import (
    AISession,
    Message,
    MessageRole,
    SessionSource,
    SessionStatus,
)
from lifeline.ai_sessions.schemas import MessageCreate, MessageRead, SessionRead
from lifeline.db import UTCDateTime, utcnow
from lifeline.errors import Conflict, Forbidden, NotFound
from lifeline.pagination import keyset, page
from lifeline.realtime.events import AUDIENCE_ACCOUNT, record_event, restricted_audience


def was_escalated() -> ColumnElement[bool]:
    return AISession.escalated_at.is_not(None)


def visible_to(user: User) -> ColumnElement[bool]:
    """Creator, assignee and the account's managers; once escalated, every member."""
    in_account = AISession.account_id == user.account_id
    if is_manager(user):
        return in_account & true()
    return in_account & or_(
        AISession.created_by == user.id, AISession.assigned_to == user.id, was_escalated()
    )


async def get_visible_session(*, db: AsyncSession, user: User, session_id: str) -> AISession:
    session = await db.scalar(select(AISession).where(AISession.id == session_id, visible_to(user)))
    if session is None:
        raise NotFound("AI session not found")
    return session


def is_session_owner(session: AISession, user: User) -> bool:
    return user.id in (session.created_by, session.assigned_to)


async def session_audience(db: AsyncSession, session: AISession) -> str:
    if session.escalated_at is not None:
        return AUDIENCE_ACCOUNT
    return restricted_audience([session.created_by, session.assigned_to])


async def set_status(
    db: AsyncSession, session_id: str, status: SessionStatus, now: datetime, **values: Any
) -> None:
    """A hand-off moved the session on (``values``: its assignee, for one)."""
    await db.execute(
        update(AISession)
        .where(AISession.id == session_id)
        .values(status=status, updated_at=now, **values)
    )


async def mark_escalated(db: AsyncSession, session_id: str, now: datetime) -> None:
    """Escalated to the team: from now on, and for good, every member of the account sees it."""
    await set_status(
        db,
        session_id,
        SessionStatus.ESCALATED,
        now,
        escalated_at=func.coalesce(AISession.escalated_at, literal(now, UTCDateTime())),
    )


async def mark_parked(db: AsyncSession, session_id: str, parked_by: str, now: datetime) -> None:
    """Parked: private, so whoever parked it sees "parked" and everyone else the status it had
    before (kept across a second park)."""
    await set_status(
        db,
        session_id,
        SessionStatus.PARKED,
        now,
        parked_by=parked_by,
        status_before_park=case(
            (AISession.status == SessionStatus.PARKED, AISession.status_before_park),
            else_=AISession.status,
        ),
    )


async def create_session(
    *,
    db: AsyncSession,
    actor: User,
    title: str,
    messages: list[MessageCreate],
    source: SessionSource = SessionSource.API,
    client_name: str | None = None,
    external_id: str | None = None,
) -> AISession:
    now = utcnow()
    session = AISession(
        account_id=actor.account_id,
        created_by=actor.id,
        title=title,
        status=SessionStatus.ACTIVE,
        created_at=now,
        updated_at=now,
        source=source,
        client_name=client_name,
        external_id=external_id,
    )
    db.add(session)
    await db.flush()
    for item in messages:
        db.add(_message(session, actor, item.role, item.content))
    await db.flush()
    return session


async def find_external_session(
    *, db: AsyncSession, user: User, source: SessionSource, external_id: str
) -> AISession | None:
    """The session an agent's own conversation id already names in the user's account.

    One the user may not see is refused rather than hidden: the id is taken either way.
    """
    session = await db.scalar(
        select(AISession).where(
            AISession.account_id == user.account_id,
            AISession.source == source,
            AISession.external_id == external_id,
        )
    )
    if session is None:
        return None
    visible = await db.scalar(
        select(AISession.id).where(AISession.id == session.id, visible_to(user))
    )
    if visible is None:
        raise Conflict("external_id: already used by a session you can't see")
    return session


def _message(session: AISession, author: User, role: str, content: str) -> Message:
    return Message(
        session_id=session.id,
        account_id=session.account_id,
        role=role,
        author_user_id=author.id,
        content=content,
        created_at=utcnow(),
    )


def _park_hidden_from(user: User) -> ColumnElement[bool]:
    """Parked by someone else (who recorded the status before): a park this user can't see."""
    return (
        (AISession.status == SessionStatus.PARKED)
        & AISession.parked_by.is_distinct_from(user.id)
        & AISession.status_before_park.is_not(None)
    )


def status_seen_by(session: AISession, user: User) -> SessionStatus:
    """A park tells nobody: to all but who parked it, the session keeps its status before."""
    if (
        session.status == SessionStatus.PARKED
        and session.parked_by != user.id
        and session.status_before_park is not None
    ):
        return SessionStatus(session.status_before_park)
    return SessionStatus(session.status)


def status_as_seen_by(user: User, status: SessionStatus) -> ColumnElement[bool]:
    """:func:`status_seen_by` as a WHERE clause."""
    hidden = _park_hidden_from(user)
    if status == SessionStatus.PARKED:
        return (AISession.status == status) & ~hidden
    return (AISession.status == status) | (hidden & (AISession.status_before_park == status))


def seen_by(session: AISession, user: User) -> SessionRead:
    """The session as ``user`` may see it."""
    read = SessionRead.model_validate(session)
    return read.model_copy(update={"status": status_seen_by(session, user)})


async def list_sessions(
    *,
    db: AsyncSession,
    user: User,
    status: SessionStatus | None,
    mine: bool,
    cursor: str | None,
    limit: int,
) -> tuple[list[AISession], str | None]:
    query = select(AISession).where(visible_to(user))
    if status is not None:
        query = query.where(status_as_seen_by(user, status))
    if mine:
        query = query.where(or_(AISession.created_by == user.id, AISession.assigned_to == user.id))
    query = keyset(
        query, AISession.created_at, AISession.id, cursor=cursor, limit=limit, descending=True
    )
    rows = (await db.scalars(query)).all()
    return page(rows, limit, lambda s: (s.created_at, s.id))


async def add_message(
    *, db: AsyncSession, actor: User, session_id: str, role: MessageRole, content: str
) -> Message:
    """Append to the transcript; only the session's creator or assignee writes to it."""
    session = await get_visible_session(db=db, user=actor, session_id=session_id)
    if not is_session_owner(session, actor):
        raise Forbidden("Only the session's creator or assignee can add messages")
    message = _message(session, actor, role, content)
    db.add(message)
    session.updated_at = message.created_at
    await db.flush()
    data: dict[str, Any] = MessageRead.model_validate(message).model_dump(mode="json")
    await record_event(
        db=db,
        account_id=session.account_id,
        type="session.message",
        audience=await session_audience(db, session),
        data=data,
    )
    return message


async def list_messages(
    *, db: AsyncSession, user: User, session_id: str, cursor: str | None, limit: int
) -> tuple[list[Message], str | None]:
    await get_visible_session(db=db, user=user, session_id=session_id)
    query = keyset(
        select(Message).where(Message.session_id == session_id),
        Message.created_at,
        Message.id,
        cursor=cursor,
        limit=limit,
        descending=False,
    )
    rows = (await db.scalars(query)).all()
    return page(rows, limit, lambda m: (m.created_at, m.id))


async def last_messages(*, db: AsyncSession, session_id: str, count: int) -> list[Message]:
    """The tail of a transcript, oldest first (for notifications)."""
    rows = (
        await db.scalars(
            select(Message)
            .where(Message.session_id == session_id)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(count)
        )
    ).all()
    return list(reversed(rows))


async def messages_after(
    *, db: AsyncSession, session_id: str, after_id: str | None, exclude_author: str, limit: int
) -> list[Message]:
    """Transcript messages written after ``after_id`` by anyone but ``exclude_author``."""
    query = select(Message).where(
        Message.session_id == session_id,
        or_(Message.author_user_id.is_(None), Message.author_user_id != exclude_author),
    )
    if after_id is not None:
        anchor = await db.get(Message, after_id)
        if anchor is None or anchor.session_id != session_id:
            raise NotFound("Message not found in this session")
        query = query.where(
            or_(
                Message.created_at > anchor.created_at,
                and_(Message.created_at == anchor.created_at, Message.id > anchor.id),
            )
        )
    rows = await db.scalars(query.order_by(Message.created_at, Message.id).limit(limit))
    return list(rows.all())


async def latest_message_id(*, db: AsyncSession, session_id: str) -> str | None:
    message_id: str | None = await db.scalar(
        select(Message.id)
        .where(Message.session_id == session_id)
        .order_by(Message.created_at.desc(), Message.id.desc())
        .limit(1)
    )
    return message_id
