"""HTTP routes: a session's handoffs, and the team queue.

``queue_router`` is registered before the AI-session router so that ``/ai-sessions/queue``
never parses as a session id.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import TypeAdapter

from lifeline import idempotency, metrics
from lifeline.db import utcnow
from lifeline.deps import (
    ContextDep,
    CurrentUser,
    IdempotencyKey,
    PageParams,
    ReaderDep,
    SeniorUser,
    SessionDep,
)
from lifeline.errors import Conflict
from lifeline.handoffs import schemas
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import HandoffStatus

queue_router = APIRouter(prefix="/ai-sessions", tags=["handoffs"])
router = APIRouter(prefix="/ai-sessions/{session_id}", tags=["handoffs"])


QUEUE_LIST = TypeAdapter(schemas.QueueList)


@queue_router.get("/queue", response_model=schemas.QueueList)
async def team_queue(
    db: ReaderDep,
    user: CurrentUser,
    paging: PageParams,
    status_: Annotated[Literal["open", "claimed"], Query(alias="status")] = "open",
) -> Response:
    # Columns, not ORM objects, validated once into the documented shape and serialised once.
    limit, cursor = paging
    rows, next_cursor = await handoffs.team_queue_rows(
        db=db, user=user, status=HandoffStatus(status_), cursor=cursor, limit=limit
    )
    now = utcnow()
    items = []
    for row in rows:
        item = row._asdict()
        item["session"] = {"id": item["session_id"], "title": item.pop("session_title")}
        item["escalator"] = {"id": item["created_by"], "name": item.pop("escalator_name")}
        item["age_seconds"] = max(0, int((now - item["created_at"]).total_seconds()))
        items.append(item)
    body = QUEUE_LIST.dump_json(
        QUEUE_LIST.validate_python({"items": items, "next_cursor": next_cursor})
    )
    return Response(body, media_type="application/json")


@router.post("/handoff", response_model=schemas.HandoffRead, status_code=status.HTTP_201_CREATED)
async def create_handoff(
    db: SessionDep,
    ctx: ContextDep,
    user: SeniorUser,
    session_id: str,
    body: schemas.HandoffCreate,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> schemas.HandoffRead:
    async def create() -> dict[str, Any]:
        handoff = await handoffs.create_handoff(
            db=db,
            actor=user,
            session_id=session_id,
            intent=body.intent,
            note=body.note,
            brief=body.brief.model_dump(mode="json") if body.brief else None,
            email_cap=ctx.settings.email_cap_per_hour,
        )
        metrics.handoff_created(handoff.intent)
        return schemas.HandoffRead.model_validate(handoff).model_dump(mode="json")

    answer = await idempotency.create_once(
        db=db,
        user_id=user.id,
        key=idempotency_key,
        request=request,
        response=response,
        body=body,
        create=create,
    )
    return schemas.HandoffRead.model_validate(answer)


@router.get("/handoffs", response_model=schemas.HandoffList)
async def list_handoffs(
    db: SessionDep, user: CurrentUser, session_id: str, paging: PageParams
) -> schemas.HandoffList:
    limit, cursor = paging
    rows, next_cursor = await handoffs.list_handoffs(
        db=db, user=user, session_id=session_id, cursor=cursor, limit=limit
    )
    return schemas.HandoffList(
        items=[schemas.HandoffRead.model_validate(h) for h in rows], next_cursor=next_cursor
    )


_TRANSITION_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "not allowed"},
    404: {},
    409: {},
}


@router.post(
    "/handoffs/{handoff_id}/claim",
    response_model=schemas.HandoffRead,
    summary="Pick Up an escalation",
    responses=_TRANSITION_ERRORS,
)
async def claim_handoff(
    db: SessionDep, ctx: ContextDep, user: SeniorUser, session_id: str, handoff_id: str
) -> schemas.HandoffRead:
    try:
        handoff = await handoffs.claim_in_turn(
            db=db,
            gate=ctx.claims,
            reads=ctx.read_engine,
            actor=user,
            session_id=session_id,
            handoff_id=handoff_id,
        )
    except Conflict:
        metrics.claim_conflict()
        raise
    if handoff.claimed_at is not None:
        metrics.claim_won((handoff.claimed_at - handoff.created_at).total_seconds())
    return schemas.HandoffRead.model_validate(handoff)


@router.post(
    "/handoffs/{handoff_id}/release",
    response_model=schemas.HandoffRead,
    summary="Put a picked-up escalation back",
    responses=_TRANSITION_ERRORS,
)
async def release_handoff(
    db: SessionDep, ctx: ContextDep, user: SeniorUser, session_id: str, handoff_id: str
) -> schemas.HandoffRead:
    handoff = await handoffs.release_handoff(
        db=db,
        actor=user,
        session_id=session_id,
        handoff_id=handoff_id,
        email_cap=ctx.settings.email_cap_per_hour,
    )
    return schemas.HandoffRead.model_validate(handoff)


@router.post(
    "/handoffs/{handoff_id}/resolve",
    response_model=schemas.HandoffRead,
    summary="Mark the handoff done",
    responses=_TRANSITION_ERRORS,
)
async def resolve_handoff(
    db: SessionDep,
    user: SeniorUser,
    session_id: str,
    handoff_id: str,
    body: schemas.HandoffResolve | None = None,
) -> schemas.HandoffRead:
    """Done; an optional ``answer`` goes back to whoever escalated (an agent waits for it)."""
    handoff = await handoffs.resolve_handoff(
        db=db,
        actor=user,
        session_id=session_id,
        handoff_id=handoff_id,
        answer=body.answer if body else None,
    )
    return schemas.HandoffRead.model_validate(handoff)


@router.post(
    "/handoffs/{handoff_id}/cancel",
    response_model=schemas.HandoffRead,
    summary="Withdraw the handoff",
    responses=_TRANSITION_ERRORS,
)
async def cancel_handoff(
    db: SessionDep, user: SeniorUser, session_id: str, handoff_id: str
) -> schemas.HandoffRead:
    handoff = await handoffs.cancel_handoff(
        db=db, actor=user, session_id=session_id, handoff_id=handoff_id
    )
    return schemas.HandoffRead.model_validate(handoff)


__all__ = ["queue_router", "router"]
