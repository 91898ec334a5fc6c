"""HTTP routes: the caller's profile, team members, API tokens and account settings."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from lifeline.accounts import schemas
from lifeline.accounts import service as accounts
from lifeline.accounts.models import Account
from lifeline.deps import AdminUser, ContextDep, CurrentUser, PageParams, PrincipalDep, SessionDep
from lifeline.members import service as members
from lifeline.policies import service as policies

router = APIRouter(tags=["accounts"])


async def account_read(db: SessionDep, account: Account) -> schemas.AccountRead:
    policy = await policies.get_policy(db=db, account_id=account.id)
    return schemas.AccountRead(
        id=account.id, name=account.name, reminder_minutes=policies.reminder_minutes(policy)
    )


async def _me(db: SessionDep, user: CurrentUser) -> schemas.MeRead:
    account = await accounts.get_account(db=db, account_id=user.account_id)
    return schemas.MeRead.model_validate(
        {
            **schemas.UserRead.model_validate(user).model_dump(),
            "account": await account_read(db, account),
        }
    )


@router.get("/me", response_model=schemas.MeRead)
async def read_me(db: SessionDep, user: CurrentUser) -> schemas.MeRead:
    return await _me(db, user)


@router.patch("/me", response_model=schemas.MeRead)
async def update_me(
    db: SessionDep, principal: PrincipalDep, body: schemas.MeUpdate
) -> schemas.MeRead:
    await accounts.update_me(
        db=db,
        user=principal.user,
        name=body.name,
        email_notifications=body.email_notifications,
        password=body.password,
        current_password=body.current_password,
        keep_web_session_id=principal.web_session_id,
    )
    return await _me(db, principal.user)


@router.get("/account", response_model=schemas.AccountRead)
async def read_account(db: SessionDep, user: CurrentUser) -> schemas.AccountRead:
    account = await accounts.get_account(db=db, account_id=user.account_id)
    return await account_read(db, account)


@router.patch("/account", response_model=schemas.AccountRead)
async def update_account(
    db: SessionDep, user: AdminUser, body: schemas.AccountUpdate
) -> schemas.AccountRead:
    account = await accounts.update_account(db=db, account_id=user.account_id, name=body.name)
    if body.reminder_minutes is not None:
        await policies.set_reminder_minutes(
            db=db, account_id=user.account_id, actor_id=user.id, minutes=body.reminder_minutes
        )
    return await account_read(db, account)


@router.get("/users", response_model=schemas.UserList)
async def list_users(db: SessionDep, user: CurrentUser, paging: PageParams) -> schemas.UserList:
    limit, cursor = paging
    users, next_cursor = await accounts.list_users(
        db=db, account_id=user.account_id, cursor=cursor, limit=limit
    )
    return schemas.UserList(
        items=[schemas.UserRead.model_validate(u) for u in users], next_cursor=next_cursor
    )


@router.post("/users", response_model=schemas.UserCreated, status_code=status.HTTP_201_CREATED)
async def invite_user(
    db: SessionDep, actor: AdminUser, body: schemas.UserCreate
) -> schemas.UserCreated:
    new_user, secret = await accounts.invite_user(
        db=db,
        actor=actor,
        email=body.email,
        name=body.name,
        role=body.role,
        password=body.password,
    )
    return schemas.UserCreated(user=schemas.UserRead.model_validate(new_user), token=secret)


@router.get("/users/{user_id}", response_model=schemas.UserRead)
async def read_user(db: SessionDep, user: CurrentUser, user_id: str) -> schemas.UserRead:
    target = await accounts.get_user(db=db, account_id=user.account_id, user_id=user_id)
    return schemas.UserRead.model_validate(target)


@router.patch("/users/{user_id}", response_model=schemas.UserRead)
async def update_user(
    db: SessionDep, ctx: ContextDep, actor: AdminUser, user_id: str, body: schemas.UserUpdate
) -> schemas.UserRead:
    target = await members.update_member(
        db=db,
        actor=actor,
        user_id=user_id,
        role=body.role,
        name=body.name,
        email_cap=ctx.settings.email_cap_per_hour,
    )
    return schemas.UserRead.model_validate(target)


@router.delete("/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_user(db: SessionDep, ctx: ContextDep, actor: AdminUser, user_id: str) -> Response:
    await members.remove_member(
        db=db, actor=actor, user_id=user_id, email_cap=ctx.settings.email_cap_per_hour
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/tokens", response_model=schemas.TokenList)
async def list_tokens(db: SessionDep, user: CurrentUser, paging: PageParams) -> schemas.TokenList:
    limit, cursor = paging
    tokens, next_cursor = await accounts.list_tokens(db=db, user=user, cursor=cursor, limit=limit)
    return schemas.TokenList(
        items=[schemas.TokenRead.model_validate(t) for t in tokens], next_cursor=next_cursor
    )


@router.post("/tokens", response_model=schemas.TokenCreated, status_code=status.HTTP_201_CREATED)
async def create_token(
    db: SessionDep, user: CurrentUser, body: schemas.TokenCreate
) -> schemas.TokenCreated:
    token, secret = await accounts.create_token(db=db, user=user, name=body.name)
    return schemas.TokenCreated(
        **schemas.TokenRead.model_validate(token).model_dump(), token=secret
    )


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(db: SessionDep, user: CurrentUser, token_id: str) -> Response:
    await accounts.revoke_token(db=db, user=user, token_id=token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
