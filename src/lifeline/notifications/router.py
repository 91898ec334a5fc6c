"""HTTP routes: a handoff's delivery records."""

from __future__ import annotations

from fastapi import APIRouter

from lifeline.accounts.models import User
from lifeline.deps import CurrentUser, PageParams, SessionDep
from lifeline.notifications import schemas
from lifeline.notifications import service as notifications
from lifeline.notifications.models import Channel, Delivery, DeliveryKind, DeliveryStatus

router = APIRouter(prefix="/handoffs", tags=["notifications"])


def _read(delivery: Delivery, recipient: User | None) -> schemas.DeliveryRead:
    return schemas.DeliveryRead(
        id=delivery.id,
        handoff_id=delivery.handoff_id or "",
        recipient=(
            schemas.RecipientRef(id=recipient.id, name=recipient.name, email=recipient.email)
            if recipient is not None
            else None
        ),
        endpoint_id=delivery.endpoint_id,
        channel=Channel(delivery.channel),
        kind=DeliveryKind(delivery.kind),
        status=DeliveryStatus(delivery.status),
        attempts=delivery.attempts,
        last_error=delivery.last_error,
        next_attempt_at=(
            delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None
        ),
        sent_at=delivery.sent_at,
        created_at=delivery.created_at,
    )


@router.get(
    "/{handoff_id}/deliveries",
    response_model=schemas.DeliveryList,
    summary="Per-recipient, per-channel delivery records of a handoff",
    responses={403: {"description": "not an admin, owner or the escalator"}, 404: {}},
)
async def list_deliveries(
    db: SessionDep, user: CurrentUser, handoff_id: str, paging: PageParams
) -> schemas.DeliveryList:
    limit, cursor = paging
    rows, next_cursor = await notifications.list_deliveries(
        db=db, user=user, handoff_id=handoff_id, cursor=cursor, limit=limit
    )
    return schemas.DeliveryList(items=[_read(d, u) for d, u in rows], next_cursor=next_cursor)
