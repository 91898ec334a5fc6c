"""Settings › Integrations (admins and owners): webhook endpoints and the Slack app.

Forms post to the same services as the API; a refused URL, a lost race or a token Slack won't
take comes back as a message on the page, with nothing saved.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline.deps import ContextDep, Principal, SessionDep
from lifeline.errors import LifelineError
from lifeline.integrations import schemas, slack
from lifeline.integrations import webhooks as service
from lifeline.integrations.models import SlackIntegration
from lifeline.web.auth import FormPrincipal, WebPrincipal
from lifeline.web.router import page_context
from lifeline.web.routing import Bounce, PageRoute
from lifeline.web.settings_page import require_manager
from lifeline.web.templating import redirect, render

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE = "/settings/integrations"
DELIVERIES_SHOWN = 10


async def _render(
    request: Request,
    db: AsyncSession,
    principal: Principal,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    user = principal.user
    require_manager(user)
    endpoints, _ = await service.list_endpoints(db=db, actor=user, cursor=None, limit=100)
    deliveries = {}
    for endpoint in endpoints:
        rows, _ = await service.list_deliveries(
            db=db, actor=user, endpoint_id=endpoint.id, cursor=None, limit=DELIVERIES_SHOWN
        )
        deliveries[endpoint.id] = rows
    return render(
        request,
        "settings_integrations.html",
        page_context(
            principal,
            endpoints=endpoints,
            deliveries=deliveries,
            event_types=schemas.EVENT_TYPES,
            slack=await db.get(SlackIntegration, user.account_id),
            request_base=str(request.app.state.settings.base_url).rstrip("/"),
            **extra,
        ),
        status_code=status_code,
    )


def _bounce(exc: LifelineError) -> Bounce:
    return Bounce(PAGE, error=exc.detail)


@router.get(PAGE)
async def integrations_page(request: Request, db: SessionDep, principal: WebPrincipal) -> Response:
    return await _render(request, db, principal)


@router.post("/settings/webhooks")
async def create_webhook(
    request: Request,
    db: SessionDep,
    ctx: ContextDep,
    principal: FormPrincipal,
    url: Annotated[str, Form(max_length=2000)],
    event_types: Annotated[list[str], Form()],
    description: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    require_manager(principal.user)
    body = schemas.WebhookCreate.model_validate(
        {"url": url.strip(), "event_types": event_types, "description": description.strip()}
    )
    try:
        endpoint = await service.create_endpoint(
            db=db,
            actor=principal.user,
            url=body.url,
            event_types=list(body.event_types),
            description=body.description,
            enabled=True,
            allow_private=ctx.settings.webhook_allow_private,
        )
    except LifelineError as exc:
        raise _bounce(exc) from exc
    return await _render(
        request, db, principal, status_code=201, new_secret=endpoint.secret, new_for=endpoint
    )


@router.post("/settings/webhooks/{webhook_id}/enabled")
async def set_enabled(
    request: Request,
    db: SessionDep,
    ctx: ContextDep,
    principal: FormPrincipal,
    webhook_id: str,
    enabled: Annotated[bool, Form()],
) -> Response:
    require_manager(principal.user)
    endpoint = await service.update_endpoint(
        db=db,
        actor=principal.user,
        endpoint_id=webhook_id,
        changes={"enabled": enabled},
        allow_private=ctx.settings.webhook_allow_private,
    )
    state = "enabled" if endpoint.enabled else "disabled"
    return redirect(request, PAGE, notice=f"Webhook {endpoint.url} {state}.")


@router.post("/settings/webhooks/{webhook_id}/delete")
async def delete_webhook(
    request: Request, db: SessionDep, principal: FormPrincipal, webhook_id: str
) -> Response:
    require_manager(principal.user)
    await service.delete_endpoint(db=db, actor=principal.user, endpoint_id=webhook_id)
    return redirect(request, PAGE, notice="Webhook deleted.")


@router.post("/settings/webhooks/{webhook_id}/rotate")
async def rotate_secret(
    request: Request, db: SessionDep, principal: FormPrincipal, webhook_id: str
) -> Response:
    require_manager(principal.user)
    endpoint = await service.rotate_secret(db=db, actor=principal.user, endpoint_id=webhook_id)
    return await _render(
        request, db, principal, new_secret=endpoint.secret, new_for=endpoint, rotated=True
    )


@router.post("/settings/webhooks/{webhook_id}/test")
async def test_webhook(
    request: Request, db: SessionDep, principal: FormPrincipal, webhook_id: str
) -> Response:
    require_manager(principal.user)
    await service.send_test(db=db, actor=principal.user, endpoint_id=webhook_id)
    return redirect(request, PAGE, notice="Test event queued; its delivery is listed below.")


@router.post("/settings/webhooks/{webhook_id}/deliveries/{delivery_id}/replay")
async def replay_delivery(
    request: Request, db: SessionDep, principal: FormPrincipal, webhook_id: str, delivery_id: str
) -> Response:
    require_manager(principal.user)
    try:
        await service.replay_delivery(
            db=db, actor=principal.user, endpoint_id=webhook_id, delivery_id=delivery_id
        )
    except LifelineError as exc:
        if exc.status_code == 404:
            raise
        raise _bounce(exc) from exc
    return redirect(request, PAGE, notice="Delivery queued again.")


@router.post("/settings/webhooks/{webhook_id}/replay")
async def replay_failed(
    request: Request,
    db: SessionDep,
    principal: FormPrincipal,
    webhook_id: str,
    since: Annotated[datetime, Form()],
) -> Response:
    require_manager(principal.user)
    moment = since if since.tzinfo else since.replace(tzinfo=UTC)
    try:
        count = await service.replay_failed_since(
            db=db, actor=principal.user, endpoint_id=webhook_id, since=moment
        )
    except LifelineError as exc:
        if exc.status_code == 404:
            raise
        raise _bounce(exc) from exc
    return redirect(request, PAGE, notice=f"{count} failed deliveries queued again.")


@router.post("/settings/slack")
async def save_slack(
    request: Request,
    db: SessionDep,
    ctx: ContextDep,
    principal: FormPrincipal,
    bot_token: Annotated[str, Form(max_length=300)],
    signing_secret: Annotated[str, Form(max_length=200)],
    channel: Annotated[str, Form(max_length=100)],
) -> Response:
    require_manager(principal.user)
    body = schemas.SlackConfig(bot_token=bot_token, signing_secret=signing_secret, channel=channel)
    try:
        config = await slack.save_config(
            db=db,
            account_id=principal.user.account_id,
            bot_token=body.bot_token,
            signing_secret=body.signing_secret,
            channel=body.channel,
            api_url=ctx.settings.slack_api_url,
        )
    except LifelineError as exc:
        raise _bounce(exc) from exc
    return redirect(request, PAGE, notice=f"Slack connected: {config.team_name or config.team_id}.")


@router.post("/settings/slack/remove")
async def remove_slack(request: Request, db: SessionDep, principal: FormPrincipal) -> Response:
    require_manager(principal.user)
    await slack.delete_config(db=db, account_id=principal.user.account_id)
    return redirect(request, PAGE, notice="Slack disconnected.")
