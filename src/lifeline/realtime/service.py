"""Reading the event log: replay after a client's last id, and catch-up after a broker gap."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.realtime.audience import Viewer, visible_events
from lifeline.realtime.models import Event

REPLAY_PAGE = 200


async def latest_event_id(*, db: AsyncSession, account_id: str) -> int:
    """The newest event id of an account (0 before its first event)."""
    latest = await db.scalar(select(func.max(Event.id)).where(Event.account_id == account_id))
    return int(latest or 0)


async def events_for_viewer(
    *, db: AsyncSession, viewer: Viewer, after_id: int, limit: int = REPLAY_PAGE
) -> Sequence[Event]:
    """The events ``viewer`` may see with an id above ``after_id``, oldest first."""
    query = (
        select(Event)
        .where(visible_events(viewer), Event.id > after_id)
        .order_by(Event.id)
        .limit(limit)
    )
    return (await db.scalars(query)).all()


async def events_for_account(
    *, db: AsyncSession, account_id: str, after_id: int, limit: int
) -> Sequence[Event]:
    """Every event of an account above ``after_id``, oldest first (filtered per connection)."""
    query = (
        select(Event)
        .where(Event.account_id == account_id, Event.id > after_id)
        .order_by(Event.id)
        .limit(limit)
    )
    return (await db.scalars(query)).all()
