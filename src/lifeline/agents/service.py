"""What an agent's tools do: escalate with a brief, read where it stands, read the replies.

Everything here runs inside the caller's unit of work and only flushes; the acting user is the
token's, never an argument.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from lifeline.accounts.models import User, is_senior
from lifeline.accounts.schemas import UserRef
from lifeline.agents.schemas import (
    AgentMessage,
    EscalateResult,
    HandoffView,
    PickupResult,
    ReplyResult,
    TranscriptEntry,
)
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import AISession, Message, MessageRole, SessionSource
from lifeline.ai_sessions.schemas import MessageCreate
from lifeline.errors import Forbidden
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, HandoffStatus, Intent
from lifeline.handoffs.schemas import Brief

MAX_TITLE = 120
REPLY_BATCH = 100
_STATUSES = frozenset(HandoffStatus)


def session_url(base_url: str, session_id: str) -> str:
    return f"{base_url.rstrip('/')}/sessions/{session_id}"


def title_from(ask: str) -> str:
    first_line = ask.strip().splitlines()[0] if ask.strip() else "Escalation"
    return first_line if len(first_line) <= MAX_TITLE else first_line[: MAX_TITLE - 1] + "…"


async def user_ref(db: AsyncSession, user_id: str | None) -> UserRef | None:
    if user_id is None:
        return None
    user = await db.get(User, user_id)
    return UserRef(id=user_id, name=user.name if user else "a former member")


def _escalated(handoff: Handoff, base_url: str, *, created: bool) -> EscalateResult:
    return EscalateResult(
        handoff_id=handoff.id,
        session_id=handoff.session_id,
        status=handoff.status,
        url=session_url(base_url, handoff.session_id),
        created=created,
    )


async def _live_escalation(db: AsyncSession, session_id: str) -> Handoff | None:
    latest = await handoffs.latest_escalation(db=db, session_id=session_id)
    return latest if latest is not None and HandoffStatus(latest.status).is_live else None


async def _external_session(db: AsyncSession, actor: User, external_id: str) -> AISession | None:
    return await sessions.find_external_session(
        db=db, user=actor, source=SessionSource.MCP, external_id=external_id
    )


async def escalate(
    *,
    db: AsyncSession,
    actor: User,
    base_url: str,
    brief: Brief,
    title: str | None,
    transcript: list[TranscriptEntry],
    session_id: str | None,
    external_id: str | None,
    client_name: str | None,
    email_cap: int,
) -> EscalateResult:
    """Escalate for an agent; the same conversation while its escalation is live gets it back."""
    if not is_senior(actor):
        raise Forbidden("Engineer or admin access required: a viewer can't escalate")
    session: AISession | None = None
    if session_id is not None:
        session = await sessions.get_visible_session(db=db, user=actor, session_id=session_id)
    elif external_id is not None:
        session = await _external_session(db, actor, external_id)
    if session is not None:
        live = await _live_escalation(db, session.id)
        if live is not None:
            return _escalated(live, base_url, created=False)
    else:
        messages = [MessageCreate(role=MessageRole(e.role), content=e.content) for e in transcript]
        try:
            async with db.begin_nested():
                session = await sessions.create_session(
                    db=db,
                    actor=actor,
                    title=title or title_from(brief.ask),
                    messages=messages,
                    source=SessionSource.MCP,
                    client_name=client_name,
                    external_id=external_id,
                )
        except IntegrityError:
            # The same conversation escalated at the same moment by a retry: use the winner's.
            assert external_id is not None
            session = await _external_session(db, actor, external_id)
            if session is None:
                raise
            live = await _live_escalation(db, session.id)
            if live is not None:
                return _escalated(live, base_url, created=False)
    handoff = await handoffs.create_handoff(
        db=db,
        actor=actor,
        session_id=session.id,
        intent=Intent.ESCALATE,
        note=brief.ask,
        brief=brief.model_dump(mode="json"),
        email_cap=email_cap,
    )
    return _escalated(handoff, base_url, created=True)


async def view_handoff(
    *, db: AsyncSession, user: User, handoff_id: str, base_url: str
) -> HandoffView:
    handoff = await handoffs.find_handoff(db=db, user=user, handoff_id=handoff_id)
    return HandoffView(
        handoff_id=handoff.id,
        session_id=handoff.session_id,
        status=handoff.status,
        claimed_by=await user_ref(db, handoff.claimed_by),
        answer=handoff.answer,
        brief=Brief.model_validate(handoff.brief) if handoff.brief else None,
        url=session_url(base_url, handoff.session_id),
    )


def _pickup(
    *,
    handoff_id: str,
    status: str,
    claimer: UserRef | None,
    answer: str | None,
    waited_seconds: float,
) -> PickupResult:
    """The one shape every pick-up answer takes, however it was learned."""
    return PickupResult(
        handoff_id=handoff_id,
        status=status,
        claimed_by=claimer,
        answer=answer,
        waited_seconds=round(waited_seconds, 3),
    )


def wait_is_over(status: str | None) -> bool:
    """A reply wait ends with the escalation: resolved, cancelled or expired."""
    return status is not None and not HandoffStatus(status).is_live


async def pickup_state(
    *, db: AsyncSession, user: User, handoff_id: str, waited_seconds: float
) -> PickupResult:
    """Where the handoff stands, as the caller may see it (404 when they may not)."""
    state, _session_id = await pickup_opening(
        db=db, user=user, handoff_id=handoff_id, waited_seconds=waited_seconds
    )
    return state


async def pickup_opening(
    *, db: AsyncSession, user: User, handoff_id: str, waited_seconds: float = 0
) -> tuple[PickupResult, str]:
    """:func:`pickup_state` and the handoff's session (whose events wake the wait), in one
    lookup."""
    handoff = await handoffs.find_handoff(db=db, user=user, handoff_id=handoff_id)
    state = _pickup(
        handoff_id=handoff.id,
        status=handoff.status,
        claimer=await user_ref(db, handoff.claimed_by),
        answer=handoff.answer,
        waited_seconds=waited_seconds,
    )
    return state, handoff.session_id


class _Names:
    """Claimers' names by user id, for a little while: a woken wait names who picked it up.

    Keyed by user id (unique across accounts), filled only from reads of the handoff itself.
    """

    TTL_SECONDS = 60.0
    MAX = 10_000

    def __init__(self) -> None:
        self._names: dict[str, tuple[str, float]] = {}

    def get(self, user_id: str) -> str | None:
        hit = self._names.get(user_id)
        if hit is None or hit[1] < time.monotonic():
            return None
        return hit[0]

    def remember(self, user_id: str, name: str) -> None:
        if len(self._names) >= self.MAX:
            self._names.clear()
        self._names[user_id] = (name, time.monotonic() + self.TTL_SECONDS)


_names = _Names()


async def pickup_from_events(
    *,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    handoff_id: str,
    events: list[dict[str, Any]],
    waited_seconds: float,
) -> PickupResult | None:
    """Where the handoff stands after the events that woke its wait; ``None`` while it is open.

    The handoff's own events carry its state (the same body as the API's), in order, so the
    latest one answers without a read; only a claimer whose name isn't known yet costs one.
    """
    latest: dict[str, Any] | None = None
    for message in events:
        data = message.get("data")
        if isinstance(data, dict) and data.get("id") == handoff_id:
            latest = data
    if latest is None or latest.get("status") == "open":
        return None
    status = latest.get("status")
    claimer_id = latest.get("claimed_by")
    name = _names.get(claimer_id) if isinstance(claimer_id, str) else None
    if status not in _STATUSES or (claimer_id is not None and name is None):
        return await pickup_recheck(
            engine=engine,
            sessionmaker=sessionmaker,
            handoff_id=handoff_id,
            waited_seconds=waited_seconds,
        )
    return _pickup(
        handoff_id=handoff_id,
        status=status,
        claimer=UserRef(id=claimer_id, name=name) if claimer_id and name else None,
        answer=latest.get("answer"),
        waited_seconds=waited_seconds,
    )


async def pickup_recheck(
    *,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    handoff_id: str,
    waited_seconds: float,
) -> PickupResult | None:
    """A waiting agent's re-check, in one read: where the handoff stands now.

    The caller's right to see the handoff was checked when the wait began (``pickup_opening``);
    this runs on every wake, so it reads one row with the claimer's name in one round trip,
    outside a transaction on PostgreSQL. SQLite reads it in a session, since every
    transaction there begins with a write lock.
    """
    statement = (
        select(Handoff.id, Handoff.status, Handoff.answer, Handoff.claimed_by, User.name)
        .outerjoin(User, User.id == Handoff.claimed_by)
        .where(Handoff.id == handoff_id)
    )
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            row = (await conn.execute(statement)).one_or_none()
    else:
        async with sessionmaker() as db:
            row = (await db.execute(statement)).one_or_none()
    if row is None:
        return None
    claimer = None
    if row.claimed_by is not None:
        claimer = UserRef(id=row.claimed_by, name=row.name or "a former member")
        if row.name is not None:
            _names.remember(row.claimed_by, row.name)
    return _pickup(
        handoff_id=row.id,
        status=row.status,
        claimer=claimer,
        answer=row.answer,
        waited_seconds=waited_seconds,
    )


async def agent_message(db: AsyncSession, message: Message) -> AgentMessage:
    return AgentMessage(
        id=message.id,
        session_id=message.session_id,
        author=await user_ref(db, message.author_user_id),
        role=message.role,
        content=message.content,
        created_at=message.created_at,
    )


async def reply_anchor(*, db: AsyncSession, user: User, session_id: str) -> str | None:
    """Where "after" starts by default: the session's latest message as the wait begins."""
    await sessions.get_visible_session(db=db, user=user, session_id=session_id)
    return await sessions.latest_message_id(db=db, session_id=session_id)


async def reply_state(
    *, db: AsyncSession, user: User, session_id: str, after_id: str | None
) -> ReplyResult:
    await sessions.get_visible_session(db=db, user=user, session_id=session_id)
    rows = await sessions.messages_after(
        db=db, session_id=session_id, after_id=after_id, exclude_author=user.id, limit=REPLY_BATCH
    )
    latest = await handoffs.latest_escalation(db=db, session_id=session_id)
    return ReplyResult(
        messages=[await agent_message(db, m) for m in rows],
        status=latest.status if latest is not None else None,
        answer=latest.answer if latest is not None else None,
    )


async def post_message(
    *, db: AsyncSession, actor: User, session_id: str, content: str, role: MessageRole
) -> AgentMessage:
    message = await sessions.add_message(
        db=db, actor=actor, session_id=session_id, role=role, content=content
    )
    return await agent_message(db, message)
