"""Crafted histories: sessions and handoffs written straight to the tables with exact times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline.ai_sessions.models import AISession
from lifeline.handoffs.models import Handoff
from tests.support.factories import Person, Team


def at(text: str) -> datetime:
    """``at("03-02 09:00:00.25")`` → that moment of 2026 in UTC (full ISO works too)."""
    if len(text) < 19 or text[4] != "-":
        text = f"2026-{text}"
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass
class History:
    sessionmaker: async_sessionmaker[AsyncSession]

    async def session(
        self, team: Team, by: Person, created: datetime, title: str = "Stuck"
    ) -> AISession:
        row = AISession(
            account_id=team.account.id,
            created_by=by.id,
            title=title,
            status="active",
            created_at=created,
            updated_at=created,
        )
        async with self.sessionmaker() as db, db.begin():
            db.add(row)
        return row

    async def handoff(
        self,
        team: Team,
        by: Person,
        created: datetime,
        *,
        intent: str = "escalate",
        session: AISession | None = None,
        note: str = "please help",
        claimed: tuple[Person, float] | None = None,
        resolved_after: float | None = None,
        cancelled_after: float | None = None,
    ) -> Handoff:
        """One handoff; ``claimed=(who, seconds after creation)``, the rest seconds too."""
        if session is None:
            session = await self.session(team, by, created - timedelta(hours=1))
        status = "open"
        row = Handoff(
            session_id=session.id,
            account_id=team.account.id,
            intent=intent,
            note=note,
            created_by=by.id,
            created_at=created,
            queued_at=created,
        )
        if claimed is not None:
            who, after = claimed
            row.claimed_by, row.claimed_at = who.id, created + timedelta(seconds=after)
            status = "claimed"
        if resolved_after is not None:
            row.resolved_by = row.claimed_by or by.id
            row.resolved_at = created + timedelta(seconds=resolved_after)
            status = "resolved"
        if cancelled_after is not None:
            row.cancelled_at = created + timedelta(seconds=cancelled_after)
            status = "cancelled"
        row.status = status
        async with self.sessionmaker() as db, db.begin():
            db.add(row)
            if intent == "escalate":
                await db.execute(
                    update(AISession)
                    .where(AISession.id == session.id, AISession.escalated_at.is_(None))
                    .values(escalated_at=created)
                )
        return row
