"""The transactional outbox: delivery rows written in the handoff's own transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.handoffs.models import Handoff
from lifeline.notifications.models import Delivery, DeliveryKind


async def enqueue_wave(*, db: AsyncSession, handoff: Handoff, kind: DeliveryKind) -> list[Delivery]:
    """Write one delivery row per recipient per channel for this wave of ``handoff``."""
    return []
