"""HTTP routes for AI sessions and their transcripts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from lifeline import idempotency
from lifeline.ai_sessions import schemas
from lifeline.ai_sessions import service as sessions
from lifeline.ai_sessions.models import SessionSource, SessionStatus
from lifeline.deps import CurrentUser, IdempotencyKey, PageParams, SessionDep

router = APIRouter(prefix="/ai-sessions", tags=["ai-sessions"])


@router.post(
    "",
    response_model=schemas.SessionRead,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "model": schemas.SessionRead,
            "description": "A session with this external_id exists already: that session",
        }
    },
)
async def create_session(
    db: SessionDep,
    user: CurrentUser,
    body: schemas.SessionCreate,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> schemas.SessionRead:
    source = SessionSource(body.source)
    if body.external_id is not None:
        existing = await sessions.find_external_session(
            db=db, user=user, source=source, external_id=body.external_id
        )
        if existing is not None:
            response.status_code = status.HTTP_200_OK
            return schemas.SessionRead.model_validate(existing)

    async def create() -> dict[str, Any]:
        session = await sessions.create_session(
            db=db,
            actor=user,
            title=body.title,
            messages=body.messages,
            source=source,
            external_id=body.external_id,
        )
        return schemas.SessionRead.model_validate(session).model_dump(mode="json")

    answer = await idempotency.create_once(
        db=db,
        user_id=user.id,
        key=idempotency_key,
        request=request,
        response=response,
        body=body,
        create=create,
    )
    return schemas.SessionRead.model_validate(answer)


@router.get("", response_model=schemas.SessionList)
async def list_sessions(
    db: SessionDep,
    user: CurrentUser,
    paging: PageParams,
    status_: Annotated[SessionStatus | None, Query(alias="status")] = None,
    mine: bool = False,
) -> schemas.SessionList:
    limit, cursor = paging
    rows, next_cursor = await sessions.list_sessions(
        db=db, user=user, status=status_, mine=mine, cursor=cursor, limit=limit
    )
    return schemas.SessionList(
        items=[sessions.seen_by(s, user) for s in rows], next_cursor=next_cursor
    )


@router.get("/{session_id}", response_model=schemas.SessionRead)
async def read_session(db: SessionDep, user: CurrentUser, session_id: str) -> schemas.SessionRead:
    session = await sessions.get_visible_session(db=db, user=user, session_id=session_id)
    return sessions.seen_by(session, user)


@router.post(
    "/{session_id}/messages",
    response_model=schemas.MessageRead,
    status_code=status.HTTP_201_CREATED,
)
async def add_message(
    db: SessionDep,
    user: CurrentUser,
    session_id: str,
    body: schemas.MessageCreate,
    request: Request,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> schemas.MessageRead:
    async def create() -> dict[str, Any]:
        message = await sessions.add_message(
            db=db, actor=user, session_id=session_id, role=body.role, content=body.content
        )
        return schemas.MessageRead.model_validate(message).model_dump(mode="json")

    answer = await idempotency.create_once(
        db=db,
        user_id=user.id,
        key=idempotency_key,
        request=request,
        response=response,
        body=body,
        create=create,
    )
    return schemas.MessageRead.model_validate(answer)


@router.get("/{session_id}/messages", response_model=schemas.MessageList)
async def list_messages(
    db: SessionDep, user: CurrentUser, session_id: str, paging: PageParams
) -> schemas.MessageList:
    limit, cursor = paging
    rows, next_cursor = await sessions.list_messages(
        db=db, user=user, session_id=session_id, cursor=cursor, limit=limit
    )
    return schemas.MessageList(
        items=[schemas.MessageRead.model_validate(m) for m in rows], next_cursor=next_cursor
    )
