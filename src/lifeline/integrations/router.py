"""HTTP routes: webhook endpoints and their deliveries (admins and owners)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from lifeline.deps import AdminUser, ContextDep, PageParams, SessionDep
from lifeline.integrations import schemas
from lifeline.integrations import webhooks as service
from lifeline.integrations.models import DeliveryAttempt, WebhookEndpoint
from lifeline.notifications.models import Delivery, DeliveryStatus

router = APIRouter(prefix="/webhooks", tags=["integrations"])


def _read(endpoint: WebhookEndpoint) -> schemas.WebhookRead:
    return schemas.WebhookRead.model_validate(endpoint)


def _with_secret(endpoint: WebhookEndpoint) -> schemas.WebhookWithSecret:
    return schemas.WebhookWithSecret(**_read(endpoint).model_dump(), secret=endpoint.secret)


def _delivery(delivery: Delivery, attempts: list[DeliveryAttempt]) -> schemas.WebhookDeliveryRead:
    return schemas.WebhookDeliveryRead(
        id=delivery.id,
        event_type=str((delivery.payload or {}).get("type", "")),
        status=delivery.status,
        created_at=delivery.created_at,
        next_attempt_at=(
            delivery.next_attempt_at if delivery.status == DeliveryStatus.PENDING else None
        ),
        last_error=delivery.last_error,
        attempts=[
            schemas.AttemptRead(
                at=a.at,
                status_code=a.status_code,
                duration_ms=a.duration_ms,
                response_excerpt=a.response_excerpt,
            )
            for a in attempts
        ],
    )


@router.post("", response_model=schemas.WebhookWithSecret, status_code=status.HTTP_201_CREATED)
async def create_webhook(
    db: SessionDep, ctx: ContextDep, actor: AdminUser, body: schemas.WebhookCreate
) -> schemas.WebhookWithSecret:
    endpoint = await service.create_endpoint(
        db=db,
        actor=actor,
        url=body.url,
        event_types=list(body.event_types),
        description=body.description,
        enabled=body.enabled,
        allow_private=ctx.settings.webhook_allow_private,
    )
    return _with_secret(endpoint)


@router.get("", response_model=schemas.WebhookList)
async def list_webhooks(
    db: SessionDep, actor: AdminUser, paging: PageParams
) -> schemas.WebhookList:
    limit, cursor = paging
    rows, next_cursor = await service.list_endpoints(db=db, actor=actor, cursor=cursor, limit=limit)
    return schemas.WebhookList(items=[_read(e) for e in rows], next_cursor=next_cursor)


@router.get("/{webhook_id}", response_model=schemas.WebhookRead)
async def read_webhook(db: SessionDep, actor: AdminUser, webhook_id: str) -> schemas.WebhookRead:
    return _read(await service.get_endpoint(db=db, actor=actor, endpoint_id=webhook_id))


@router.patch("/{webhook_id}", response_model=schemas.WebhookRead)
async def update_webhook(
    db: SessionDep,
    ctx: ContextDep,
    actor: AdminUser,
    webhook_id: str,
    body: schemas.WebhookUpdate,
) -> schemas.WebhookRead:
    endpoint = await service.update_endpoint(
        db=db,
        actor=actor,
        endpoint_id=webhook_id,
        changes=body.model_dump(exclude_unset=True),
        allow_private=ctx.settings.webhook_allow_private,
    )
    return _read(endpoint)


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(db: SessionDep, actor: AdminUser, webhook_id: str) -> Response:
    await service.delete_endpoint(db=db, actor=actor, endpoint_id=webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{webhook_id}/rotate-secret", response_model=schemas.WebhookWithSecret)
async def rotate_secret(
    db: SessionDep, actor: AdminUser, webhook_id: str
) -> schemas.WebhookWithSecret:
    return _with_secret(await service.rotate_secret(db=db, actor=actor, endpoint_id=webhook_id))


@router.post(
    "/{webhook_id}/test",
    response_model=schemas.WebhookDeliveryRead,
    status_code=status.HTTP_202_ACCEPTED,
)
async def test_webhook(
    db: SessionDep, actor: AdminUser, webhook_id: str
) -> schemas.WebhookDeliveryRead:
    delivery = await service.send_test(db=db, actor=actor, endpoint_id=webhook_id)
    return _delivery(delivery, [])


@router.get("/{webhook_id}/deliveries", response_model=schemas.WebhookDeliveryList)
async def list_webhook_deliveries(
    db: SessionDep, actor: AdminUser, webhook_id: str, paging: PageParams
) -> schemas.WebhookDeliveryList:
    limit, cursor = paging
    rows, next_cursor = await service.list_deliveries(
        db=db, actor=actor, endpoint_id=webhook_id, cursor=cursor, limit=limit
    )
    return schemas.WebhookDeliveryList(
        items=[_delivery(d, a) for d, a in rows], next_cursor=next_cursor
    )


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/replay",
    response_model=schemas.WebhookDeliveryRead,
    status_code=status.HTTP_202_ACCEPTED,
)
async def replay_delivery(
    db: SessionDep, actor: AdminUser, webhook_id: str, delivery_id: str
) -> schemas.WebhookDeliveryRead:
    delivery = await service.replay_delivery(
        db=db, actor=actor, endpoint_id=webhook_id, delivery_id=delivery_id
    )
    return _delivery(delivery, [])


@router.post(
    "/{webhook_id}/replay",
    response_model=schemas.ReplayResult,
    status_code=status.HTTP_202_ACCEPTED,
)
async def replay_failed(
    db: SessionDep, actor: AdminUser, webhook_id: str, body: schemas.ReplaySince
) -> schemas.ReplayResult:
    count = await service.replay_failed_since(
        db=db, actor=actor, endpoint_id=webhook_id, since=body.since
    )
    return schemas.ReplayResult(replayed=count)
