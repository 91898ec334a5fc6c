"""What a notification says: loaded for a batch of claimed rows, rendered from Jinja2 templates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import AISession
from lifeline.handoffs.models import Handoff
from lifeline.notifications.leases import LeasedDelivery
from lifeline.notifications.models import DeliveryKind

TRANSCRIPT_TAIL = 5
MESSAGE_PREVIEW_CHARS = 1_000

HEADLINES = {
    DeliveryKind.ESCALATED: "{escalator} escalated a session and needs a hand",
    DeliveryKind.REMINDER: "Still waiting: {escalator}'s escalation has not been picked up",
    DeliveryKind.STEP: "Still waiting: {escalator}'s escalation has not been picked up",
    DeliveryKind.RELEASED: "Back in the queue: {escalator}'s escalation needs someone new",
    DeliveryKind.CLAIM_REMINDER: "Still on it? You picked up {escalator}'s escalation a while ago",
    DeliveryKind.EXPIRED: "Nobody picked up your escalation in time: it has expired",
}
SUBJECT_PREFIXES = {
    DeliveryKind.ESCALATED: "Escalated",
    DeliveryKind.REMINDER: "Reminder, still open",
    DeliveryKind.STEP: "Reminder, still open",
    DeliveryKind.RELEASED: "Back in the queue",
    DeliveryKind.CLAIM_REMINDER: "Still on it?",
    DeliveryKind.EXPIRED: "Expired",
}
ACTIONS = {
    DeliveryKind.CLAIM_REMINDER: "Open the session, and resolve or release it",
    DeliveryKind.EXPIRED: "Open the session to escalate it again or carry on",
}
DEFAULT_ACTION = "Open the session and pick it up"


@dataclass(frozen=True)
class TranscriptLine:
    role: str
    content: str


@dataclass(frozen=True)
class Wave:
    """The part of a notification shared by every recipient of one wave."""

    kind: DeliveryKind
    handoff_id: str
    handoff_status: str
    session_id: str
    session_title: str
    escalator_name: str
    note: str
    transcript: tuple[TranscriptLine, ...]
    link: str
    # From an agent's brief (or the Escalate form's extra fields), when there is one.
    tried: str | None = None
    error: str | None = None
    context_lines: tuple[str, ...] = ()


def brief_context_lines(brief: dict[str, Any] | None) -> tuple[str, ...]:
    """``repo: …``, ``branch: …``, … of a brief's context, in a fixed order, non-empty only."""
    context = (brief or {}).get("context") or {}
    lines = [
        f"{key}: {context[key]}" for key in ("repo", "branch", "commit", "url") if context.get(key)
    ]
    if context.get("files"):
        lines.append("files: " + ", ".join(context["files"]))
    return tuple(lines)


@dataclass(frozen=True)
class Recipient:
    id: str
    name: str
    email: str
    email_notifications: str
    active: bool


@dataclass(frozen=True)
class Notification:
    delivery: LeasedDelivery
    recipient: Recipient
    wave: Wave


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


async def load_notifications(
    *, db: AsyncSession, claimed: Sequence[LeasedDelivery], base_url: str
) -> list[Notification]:
    """Everything the channels need for these rows, in a handful of queries."""
    if not claimed:
        return []
    user_ids = {c.recipient_user_id for c in claimed}
    handoff_ids = {c.handoff_id for c in claimed}
    rows = (
        await db.execute(
            select(Handoff, AISession, User)
            .join(AISession, AISession.id == Handoff.session_id)
            .join(User, User.id == Handoff.created_by)
            .where(Handoff.id.in_(handoff_ids))
        )
    ).all()
    recipients = {
        u.id: Recipient(
            id=u.id,
            name=u.name,
            email=u.email,
            email_notifications=u.email_notifications,
            active=u.deleted_at is None,
        )
        for u in await db.scalars(select(User).where(User.id.in_(user_ids)))
    }
    transcripts: dict[str, tuple[TranscriptLine, ...]] = {}
    for _handoff, session, _escalator in rows:
        if session.id not in transcripts:
            tail = await sessions.last_messages(db=db, session_id=session.id, count=TRANSCRIPT_TAIL)
            transcripts[session.id] = tuple(
                TranscriptLine(role=m.role, content=_preview(m.content)) for m in tail
            )
    by_handoff = {h.id: (h, s, u) for h, s, u in rows}
    notifications = []
    for c in claimed:
        handoff, session, escalator = by_handoff[c.handoff_id]
        wave = Wave(
            kind=DeliveryKind(c.kind),
            handoff_id=handoff.id,
            handoff_status=handoff.status,
            session_id=session.id,
            session_title=session.title,
            escalator_name=escalator.name,
            note=handoff.note,
            transcript=transcripts[session.id],
            link=f"{base_url.rstrip('/')}/sessions/{session.id}",
            tried=(handoff.brief or {}).get("tried"),
            error=(handoff.brief or {}).get("error"),
            context_lines=brief_context_lines(handoff.brief),
        )
        notifications.append(
            Notification(delivery=c, recipient=recipients[c.recipient_user_id], wave=wave)
        )
    return notifications


def _preview(content: str) -> str:
    if len(content) <= MESSAGE_PREVIEW_CHARS:
        return content
    return content[:MESSAGE_PREVIEW_CHARS].rstrip() + " …"


@lru_cache(maxsize=1)
def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lifeline.notifications", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_email(wave: Wave) -> RenderedEmail:
    """Subject, plain text and HTML of a wave: the same for every recipient, so rendered once.

    The subject is not yet header-safe; the email channel makes it so.
    """
    values = {
        "wave": wave,
        "headline": HEADLINES[wave.kind].format(escalator=wave.escalator_name),
        "action": ACTIONS.get(wave.kind, DEFAULT_ACTION),
    }
    env = _templates()
    return RenderedEmail(
        subject=f"[Lifeline] {SUBJECT_PREFIXES[wave.kind]}: {wave.session_title}",
        text=env.get_template("email.txt").render(values),
        html=env.get_template("email.html").render(values),
    )
