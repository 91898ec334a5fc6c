"""The settings page: my notifications, password and API tokens; for admins the team."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.accounts import passwords, schemas
from lifeline.accounts import service as accounts
from lifeline.accounts.models import EmailPreference, Role, User, is_manager
from lifeline.deps import ContextDep, Principal, SessionDep
from lifeline.errors import Conflict, Forbidden, Unprocessable
from lifeline.members import service as members
from lifeline.policies import service as policies
from lifeline.policies.schemas import EscalationPolicy
from lifeline.web import views
from lifeline.web.auth import FormPrincipal, WebPrincipal
from lifeline.web.router import page_context
from lifeline.web.routing import Bounce, PageRoute
from lifeline.web.templating import redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PREFERENCES = [
    (EmailPreference.ALWAYS, "Always", "Email me about every escalation."),
    (
        EmailPreference.OFFLINE_ONLY,
        "Only when I'm offline",
        "Skip the email while I have Lifeline open.",
    ),
    (EmailPreference.NEVER, "Never", "I watch the queue; no escalation emails."),
]


def require_manager(user: User) -> None:
    if not is_manager(user):
        raise Forbidden("Admin or owner access required")


async def _all_members(db: AsyncSession, account_id: str) -> list[User]:
    members: list[User] = []
    cursor: str | None = None
    while True:
        rows, cursor = await accounts.list_users(
            db=db, account_id=account_id, cursor=cursor, limit=100
        )
        members.extend(rows)
        if cursor is None or len(members) >= 5_000:
            return members


async def _render_settings(
    request: Request,
    db: AsyncSession,
    principal: Principal,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    user = principal.user
    account = await accounts.get_account(db=db, account_id=user.account_id)
    tokens, _ = await accounts.list_tokens(db=db, user=user, cursor=None, limit=100)
    manager = is_manager(user)
    members = await _all_members(db, user.account_id) if manager else []
    roles = [r for r in Role if r != Role.OWNER or user.role == Role.OWNER]
    policy = await policies.get_policy(db=db, account_id=user.account_id)
    extra.setdefault("policy_json", json.dumps(policy.model_dump(mode="json"), indent=2))
    return render(
        request,
        "settings.html",
        page_context(
            principal,
            account=account,
            policy=policy,
            member_names=await views.member_names(db=db, account_id=user.account_id),
            reminder_minutes=policies.reminder_minutes(policy),
            tokens=tokens,
            manager=manager,
            members=members,
            roles=roles,
            preferences=PREFERENCES,
            **extra,
        ),
        status_code=status_code,
    )


@router.get("/settings")
async def settings_page(request: Request, db: SessionDep, principal: WebPrincipal) -> Response:
    return await _render_settings(request, db, principal)


@router.post("/settings/notifications")
async def set_notifications(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    email_notifications: Annotated[EmailPreference, Form()],
) -> Response:
    await accounts.update_me(
        db=db,
        user=principal.user,
        name=None,
        email_notifications=email_notifications,
        password=None,
        current_password=None,
    )
    return redirect(request, "/settings", notice="Notification preference saved.")


@router.post("/settings/password")
async def set_password(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    new_password: Annotated[str, Form(max_length=200)],
    current_password: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    problem = passwords.password_problem(new_password)
    if problem is not None:
        raise Unprocessable(f"new_password: {problem}")
    try:
        await accounts.update_me(
            db=db,
            user=principal.user,
            name=None,
            email_notifications=None,
            password=new_password,
            current_password=current_password,
            keep_web_session_id=principal.web_session_id,
        )
    except Forbidden as exc:
        raise Bounce("/settings", error="Your current password didn't match.") from exc
    return redirect(request, "/settings", notice="Password changed.")


@router.post("/settings/tokens")
async def create_token(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    name: Annotated[str, Form(min_length=1, max_length=200)] = "API token",
) -> Response:
    token, secret = await accounts.create_token(db=db, user=principal.user, name=name.strip())
    return await _render_settings(
        request, db, principal, status_code=201, new_token=secret, new_token_name=token.name
    )


@router.post("/settings/tokens/{token_id}/revoke")
async def revoke_token(
    request: Request, db: SessionDep, principal: FormPrincipal, token_id: str
) -> Response:
    await accounts.revoke_token(db=db, user=principal.user, token_id=token_id)
    return redirect(request, "/settings", notice="Token revoked.")


# ---- admins and owners ------------------------------------------------------------------


@router.post("/settings/account")
async def set_reminders(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    reminder_minutes: Annotated[int, Form(ge=1, le=1440)],
) -> Response:
    require_manager(principal.user)
    await policies.set_reminder_minutes(
        db=db,
        account_id=principal.user.account_id,
        actor_id=principal.user.id,
        minutes=reminder_minutes,
    )
    return redirect(
        request, "/settings", notice=f"Reminders go out after {reminder_minutes} minutes."
    )


@router.post("/settings/escalation-policy")
async def set_policy(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    policy: Annotated[str, Form(max_length=20_000)],
) -> Response:
    """The whole policy as JSON (the API's shape); a refusal comes back with the text kept."""
    require_manager(principal.user)
    try:
        parsed = EscalationPolicy.model_validate_json(policy)
        await policies.put_policy(
            db=db, account_id=principal.user.account_id, actor_id=principal.user.id, policy=parsed
        )
    except (ValidationError, Unprocessable) as exc:
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "policy"
            message = f"{where}: {first['msg']}"
        else:
            message = exc.detail
        return await _render_settings(
            request, db, principal, status_code=422, policy_error=message, policy_json=policy
        )
    return redirect(request, "/settings#escalation-policy", notice="Escalation policy saved.")


@router.post("/settings/members")
async def invite_member(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[Role, Form()],
    name: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    require_manager(principal.user)
    body = schemas.UserCreate(
        email=email, name=name.strip() or None, role=role, password=password or None
    )
    try:
        member, secret = await accounts.invite_user(
            db=db,
            actor=principal.user,
            email=body.email,
            name=body.name,
            role=body.role,
            password=body.password,
        )
    except Conflict as exc:
        raise Bounce("/settings#team", error=exc.detail) from exc
    return await _render_settings(
        request,
        db,
        principal,
        status_code=201,
        invited=member,
        invited_token=secret,
    )


@router.post("/settings/members/{user_id}/role")
async def change_role(
    request: Request,
    db: SessionDep,
    ctx: ContextDep,
    principal: FormPrincipal,
    user_id: str,
    role: Annotated[Role, Form()],
) -> Response:
    require_manager(principal.user)
    try:
        member = await members.update_member(
            db=db,
            actor=principal.user,
            user_id=user_id,
            role=role,
            name=None,
            email_cap=ctx.settings.email_cap_per_hour,
        )
    except Conflict as exc:
        raise Bounce("/settings#team", error=exc.detail) from exc
    return redirect(request, "/settings#team", notice=f"{member.name} is now {member.role}.")


@router.post("/settings/members/{user_id}/remove")
async def remove_member(
    request: Request, db: SessionDep, ctx: ContextDep, principal: FormPrincipal, user_id: str
) -> Response:
    require_manager(principal.user)
    try:
        member = await members.remove_member(
            db=db,
            actor=principal.user,
            user_id=user_id,
            email_cap=ctx.settings.email_cap_per_hour,
        )
    except Conflict as exc:
        raise Bounce("/settings#team", error=exc.detail) from exc
    return redirect(request, "/settings#team", notice=f"{member.name} was removed from the team.")
