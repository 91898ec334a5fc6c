"""Reading delivery records: the per-recipient, per-channel audit trail of a handoff."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts.models import User
from lifeline.errors import Forbidden
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.service import may_read_deliveries
from lifeline.notifications.models import Delivery
from lifeline.pagination import keyset, page


async def list_deliveries(
    *, db: AsyncSession, user: User, handoff_id: str, cursor: str | None, limit: int
) -> tuple[list[tuple[Delivery, User | None]], str | None]:
    """Oldest first. Admins, owners and the escalator; a park is its creator's alone.

    Webhook and Slack deliveries about the handoff are listed too (they have no recipient).
    """
    handoff = await handoffs.find_handoff(db=db, user=user, handoff_id=handoff_id)
    if not may_read_deliveries(user, handoff):
        raise Forbidden("Admin, owner or the escalator access required")
    query = keyset(
        select(Delivery, User)
        .outerjoin(User, User.id == Delivery.recipient_user_id)
        .where(Delivery.handoff_id == handoff.id, Delivery.account_id == user.account_id),
        Delivery.created_at,
        Delivery.id,
        cursor=cursor,
        limit=limit,
        descending=False,
    )
    rows = [(d, u) for d, u in (await db.execute(query)).all()]
    return page(rows, limit, lambda r: (r[0].created_at, r[0].id))
