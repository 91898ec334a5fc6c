"""Read models for pages: what a page shows beyond one service call (names, transcripts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import Message
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff
from lifeline.notifications import service as notifications
from lifeline.notifications.models import DeliveryStatus
from lifeline.realtime.models import Event

TRANSCRIPT_PAGE = 100
TRANSCRIPT_MAX = 2_000
DELIVERIES_MAX = 1_000
# Who an integration delivery went to, in place of a recipient's name.
_INTEGRATION_TARGETS = {"webhook": "a webhook endpoint", "slack": "the Slack channel"}


async def member_names(*, db: AsyncSession, account_id: str) -> dict[str, str]:
    """Every member's display name, former members included (history still names them)."""
    rows = await db.execute(select(User.id, User.name).where(User.account_id == account_id))
    return {user_id: name for user_id, name in rows.all()}


async def transcript(*, db: AsyncSession, user: User, session_id: str) -> list[Message]:
    """The whole transcript, oldest first (bounded, for a page)."""
    messages: list[Message] = []
    cursor: str | None = None
    while len(messages) < TRANSCRIPT_MAX:
        rows, cursor = await sessions.list_messages(
            db=db, user=user, session_id=session_id, cursor=cursor, limit=TRANSCRIPT_PAGE
        )
        messages.extend(rows)
        if cursor is None:
            break
    return messages


async def latest_event_id(*, db: AsyncSession, account_id: str) -> int:
    """Where a page's live stream starts: everything after what the page already shows."""
    value = await db.scalar(select(func.max(Event.id)).where(Event.account_id == account_id))
    return int(value or 0)


@dataclass(frozen=True)
class DeliveryRow:
    recipient: str
    channel: str
    kind: str
    status: str
    attempts: int
    last_error: str | None
    sent_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class DeliveryReport:
    rows: list[DeliveryRow]

    def names(self, channel: str, status: str) -> list[str]:
        wanted = (channel, status)
        return sorted({r.recipient for r in self.rows if (r.channel, r.status) == wanted})

    @property
    def pending(self) -> bool:
        return any(r.status == DeliveryStatus.PENDING for r in self.rows)


async def delivery_report(
    *, db: AsyncSession, user: User, handoff: Handoff
) -> DeliveryReport | None:
    """Who was emailed, reached live or missed; None when ``user`` may not see it."""
    if not handoffs.may_read_deliveries(user, handoff):
        return None
    rows: list[DeliveryRow] = []
    cursor: str | None = None
    while len(rows) < DELIVERIES_MAX:
        page, cursor = await notifications.list_deliveries(
            db=db, user=user, handoff_id=handoff.id, cursor=cursor, limit=100
        )
        rows.extend(
            DeliveryRow(
                recipient=recipient.name
                if recipient
                else _INTEGRATION_TARGETS.get(d.channel, d.channel),
                channel=d.channel,
                kind=d.kind,
                status=d.status,
                attempts=d.attempts,
                last_error=d.last_error,
                sent_at=d.sent_at,
                created_at=d.created_at,
            )
            for d, recipient in page
        )
        if cursor is None:
            break
    return DeliveryReport(rows)
