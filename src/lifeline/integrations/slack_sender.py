"""Posting and updating the escalation's Slack message (a row of the outbox, channel ``slack``)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline.config import Settings
from lifeline.db import utcnow
from lifeline.integrations import slack
from lifeline.integrations.delivery import Attempt, ClaimedSend, SendResult, excerpt
from lifeline.integrations.models import SlackIntegration, SlackMessage
from lifeline.notifications.models import Channel, Delivery, DeliveryStatus

# The post about the escalation is still on its way: an update waits for it this long.
WAIT_FOR_POST = timedelta(seconds=5)
# Slack errors that retrying will not fix.
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "message_not_found",
        "invalid_blocks",
        "missing_scope",
    }
)


class SlackSender:
    def __init__(
        self, *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker

    async def send(self, item: ClaimedSend) -> SendResult:
        if item.handoff_id is None:
            return SendResult.skipped("not about an escalation")
        async with self._sessionmaker() as db, db.begin():
            config = await db.get(SlackIntegration, item.account_id)
            if config is None:
                return SendResult.skipped("Slack is not connected")
            view = await slack.load_view(
                db=db, handoff_id=item.handoff_id, base_url=self._settings.base_url
            )
            if view is None:
                return SendResult.skipped("the escalation is gone")
            message = await db.get(SlackMessage, item.handoff_id)
            if message is None and item.event_type != "handoff.escalated":
                if await _post_pending(db, item):
                    return SendResult(
                        DeliveryStatus.FAILED,
                        "waiting for the escalation's message to be posted",
                        retryable=True,
                        retry_after=WAIT_FOR_POST,
                    )
                return SendResult.skipped("no Slack message about this escalation to update")
            token, channel = config.bot_token, config.channel
            where = (message.channel_id, message.ts) if message else None
        text, blocks = slack.render(view)
        client = slack.web_client(token=token, base_url=self._settings.slack_api_url)
        now = utcnow()
        started = time.monotonic()
        try:
            if where is None:
                response = await client.chat_postMessage(channel=channel, text=text, blocks=blocks)
            else:
                response = await client.chat_update(
                    channel=where[0], ts=where[1], text=text, blocks=blocks
                )
        except SlackApiError as exc:
            return _api_failure(exc, now, started)
        except (aiohttp.ClientError, TimeoutError) as exc:
            text_ = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return SendResult(
                DeliveryStatus.FAILED,
                text_,
                attempt=Attempt(now, None, _ms(started), text_),
                retryable=True,
            )
        attempt = Attempt(now, response.status_code, _ms(started), _body(response))
        result = SendResult.sent(attempt)
        if where is None:
            result.records.append(
                SlackMessage(
                    handoff_id=item.handoff_id,
                    account_id=item.account_id,
                    channel_id=str(response.get("channel") or channel),
                    ts=str(response.get("ts")),
                    created_at=now,
                )
            )
        return result


async def _post_pending(db: AsyncSession, item: ClaimedSend) -> bool:
    query = select(
        exists().where(
            Delivery.handoff_id == item.handoff_id,
            Delivery.channel == Channel.SLACK,
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.id != item.id,
        )
    )
    return bool(await db.scalar(query))


def _body(response: AsyncSlackResponse) -> str:
    return excerpt(json.dumps(response.data, separators=(",", ":")).encode())


def _api_failure(exc: SlackApiError, now: datetime, started: float) -> SendResult:
    response = exc.response
    error = str(response.get("error") or "unknown error")
    status = response.status_code
    attempt = Attempt(now, status, _ms(started), _body(response))
    retry_after = response.headers.get("Retry-After") if response.headers else None
    retryable = error not in PERMANENT_ERRORS
    return SendResult(
        DeliveryStatus.FAILED,
        f"Slack: {error}",
        attempt=attempt,
        retryable=retryable,
        retry_after=timedelta(seconds=int(retry_after))
        if retry_after and retry_after.isdigit()
        else None,
    )


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
