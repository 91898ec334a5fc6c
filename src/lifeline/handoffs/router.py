"""HTTP routes: a session's handoffs, and the team queue.

``queue_router`` is registered before the AI-session router so that ``/ai-sessions/queue``
never parses as a session id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import TypeAdapter

from lifeline import idempotency, metrics
from lifeline.db import utcnow
from lifeline.deps import CurrentUser, IdempotencyKey, PageParams, SeniorUser, SessionDep
from lifeline.errors import Conflict
from lifeline.handoffs import schemas
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, HandoffStatus

queue_router = APIRouter(prefix="/ai-sessions", tags=["handoffs"])
router = APIRouter(prefix="/ai-sessions/{session_id}", tags=["handoffs"])


QUEUE_LIST = TypeAdapter(schemas.QueueList)


@queue_router.get("/queue", response_model=schemas.QueueList)
async def team_queue(
    db: SessionDep,
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
        )
        metrics.handoff_created(handoff.intent)
        return schemas.HandoffRead.model_validate(handoff).model_dump(mode="json")

    outcome = await idempotency.run_once(
        db=db,
        user_id=user.id,
        key=idempotency_key,
        method=request.method,
        path=request.url.path,
        status_code=status.HTTP_201_CREATED,
        create=create,
        request_hash=idempotency.fingerprint(body),
    )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return schemas.HandoffRead.model_validate(outcome.body)


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


Transition = Callable[..., Awaitable[Handoff]]


def _transition_route(path: str, transition: Transition, summary: str) -> None:
    async def endpoint(
        db: SessionDep, user: SeniorUser, session_id: str, handoff_id: str
    ) -> schemas.HandoffRead:
        handoff = await transition(db=db, actor=user, session_id=session_id, handoff_id=handoff_id)
        return schemas.HandoffRead.model_validate(handoff)

    endpoint.__name__ = f"{path}_handoff"
    router.add_api_route(
        f"/handoffs/{{handoff_id}}/{path}",
        endpoint,
        methods=["POST"],
        response_model=schemas.HandoffRead,
        summary=summary,
        responses={403: {"description": "not allowed"}, 404: {}, 409: {}},
    )


async def _counted_claim(**kwargs: Any) -> Handoff:
    try:
        handoff = await handoffs.claim_handoff(**kwargs)
    except Conflict:
        metrics.claim_conflict()
        raise
    if handoff.claimed_at is not None:
        metrics.claim_won((handoff.claimed_at - handoff.created_at).total_seconds())
    return handoff


_transition_route("claim", _counted_claim, "Pick Up an escalation")
_transition_route("release", handoffs.release_handoff, "Put a picked-up escalation back")


@router.post(
    "/handoffs/{handoff_id}/resolve",
    response_model=schemas.HandoffRead,
    summary="Mark the handoff done",
    responses={403: {"description": "not allowed"}, 404: {}, 409: {}},
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


_transition_route("cancel", handoffs.cancel_handoff, "Withdraw the handoff")

__all__ = ["queue_router", "router"]
