"""HTTP routes of Slack: the account's app (under /api/v1) and Slack's signed interactions."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from lifeline.db import unit_of_work
from lifeline.deps import AdminUser, ContextDep, SessionDep
from lifeline.integrations import interactions, schemas, slack
from lifeline.integrations.models import SlackIntegration

config_router = APIRouter(prefix="/integrations/slack", tags=["integrations"])
# Outside /api/v1: Slack calls it, signing with the app's secret instead of a bearer token.
interactions_router = APIRouter(tags=["integrations"])


def _read(config: SlackIntegration | None) -> schemas.SlackRead:
    if config is None:
        return schemas.SlackRead(connected=False)
    return schemas.SlackRead(
        connected=True,
        team_id=config.team_id,
        team_name=config.team_name,
        channel=config.channel,
        updated_at=config.updated_at,
    )


@config_router.get("", response_model=schemas.SlackRead)
async def read_slack(db: SessionDep, actor: AdminUser) -> schemas.SlackRead:
    return _read(await db.get(SlackIntegration, actor.account_id))


@config_router.put("", response_model=schemas.SlackRead)
async def save_slack(
    db: SessionDep, ctx: ContextDep, actor: AdminUser, body: schemas.SlackConfig
) -> schemas.SlackRead:
    config = await slack.save_config(
        db=db,
        account_id=actor.account_id,
        bot_token=body.bot_token,
        signing_secret=body.signing_secret,
        channel=body.channel,
        api_url=ctx.settings.slack_api_url,
    )
    return _read(config)


@config_router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def delete_slack(db: SessionDep, actor: AdminUser) -> Response:
    await slack.delete_config(db=db, account_id=actor.account_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@interactions_router.post(
    "/integrations/slack/interactions",
    status_code=status.HTTP_200_OK,
    # Slack's endpoint, not part of the API clients program against.
    include_in_schema=False,
)
async def slack_interactions(request: Request, ctx: ContextDep) -> Response:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
        click = await interactions.verify(db=db, body=body, headers=headers)
        if click is None or not await interactions.first_time(db=db, key=click.key):
            return Response(status_code=status.HTTP_200_OK)
    api_url = ctx.settings.slack_api_url
    email = await interactions.slack_email(click=click, api_url=api_url)
    answer = await interactions.pick_up(
        sessionmaker=ctx.sessionmaker, runner=ctx.after_commit, click=click, email=email
    )
    if answer is not None:
        # Off the request: Slack wants its answer within 3 seconds.
        ctx.tasks.spawn(
            interactions.tell(click=click, api_url=api_url, text=answer), name="slack-ephemeral"
        )
    return Response(status_code=status.HTTP_200_OK)
