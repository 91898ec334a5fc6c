"""Slack's button clicks: verify, find who clicked, Pick Up through the same claim as the API.

The account is found by the payload's workspace (``team.id``), then the request is verified
with that account's signing secret (``slack_sdk``'s ``SignatureVerifier``: HMAC-SHA256 over
``v0:timestamp:body``, timestamps older than five minutes refused). Each click is acted on
once: Slack's retries and any replay of a captured request find it already recorded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline.accounts.models import User, is_senior
from lifeline.after_commit import AfterCommitRunner
from lifeline.db import unit_of_work, utcnow
from lifeline.errors import LifelineError, Unauthorized
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff
from lifeline.integrations import slack
from lifeline.integrations.models import SlackIntegration, SlackInteraction

log = logging.getLogger(__name__)

BAD_SIGNATURE = "Invalid Slack signature"
UNMATCHED = (
    "Lifeline doesn't know you: no member of this team has the email address of your Slack "
    "profile. Ask an admin to invite you with it, then try again."
)
ROLE_REQUIRED = "Engineer or admin access required"


@dataclass(frozen=True)
class Click:
    """A verified Pick Up click, and where to answer the person who clicked."""

    account_id: str
    key: str
    team_id: str
    slack_user_id: str
    channel_id: str | None
    handoff_id: str
    bot_token: str


def _payload(body: bytes) -> dict[str, Any]:
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        raise Unauthorized(BAD_SIGNATURE) from None
    if not isinstance(payload, dict):
        raise Unauthorized(BAD_SIGNATURE)
    return payload


def _team_id(payload: dict[str, Any]) -> str | None:
    team = payload.get("team")
    if isinstance(team, dict) and isinstance(team.get("id"), str):
        return str(team["id"])
    user = payload.get("user")
    if isinstance(user, dict) and isinstance(user.get("team_id"), str):
        return str(user["team_id"])
    return None


async def verify(*, db: AsyncSession, body: bytes, headers: dict[str, str]) -> Click | None:
    """The click in a request Slack signed, or None for a verified request that isn't one.

    Anything unsigned, wrongly signed, too old, or from a workspace no account connected is
    a 401 (:class:`Unauthorized`), before anything else is looked at.
    """
    payload = _payload(body)
    team_id = _team_id(payload)
    config = None
    if team_id is not None:
        config = await db.scalar(
            select(SlackIntegration).where(SlackIntegration.team_id == team_id)
        )
    if config is None or team_id is None:
        raise Unauthorized(BAD_SIGNATURE)
    timestamp = headers.get("x-slack-request-timestamp", "")
    signature = headers.get("x-slack-signature")
    if not timestamp.isdigit() or not signature:
        raise Unauthorized(BAD_SIGNATURE)
    verifier = SignatureVerifier(config.signing_secret)
    if not verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
        raise Unauthorized(BAD_SIGNATURE)
    if payload.get("type") != "block_actions":
        return None
    actions = payload.get("actions") or []
    action = next(
        (a for a in actions if isinstance(a, dict) and a.get("action_id") == slack.PICK_UP_ACTION),
        None,
    )
    user = payload.get("user") or {}
    if action is None or not isinstance(user, dict) or not isinstance(action.get("value"), str):
        return None
    channel = payload.get("channel") or {}
    slack_user_id = str(user.get("id") or "")
    return Click(
        account_id=config.account_id,
        key=f"{team_id}:{slack_user_id}:{action.get('action_ts', '')}:{action['value']}",
        team_id=team_id,
        slack_user_id=slack_user_id,
        channel_id=channel.get("id") if isinstance(channel, dict) else None,
        handoff_id=str(action["value"]),
        bot_token=config.bot_token,
    )


async def first_time(*, db: AsyncSession, key: str) -> bool:
    """Record the click; False when it was recorded before (a retry or a replay)."""
    try:
        async with db.begin_nested():
            db.add(SlackInteraction(key=key[:250], created_at=utcnow()))
            await db.flush()
    except IntegrityError:
        return False
    return True


async def slack_email(*, click: Click, api_url: str) -> str | None:
    """The clicker's email from their Slack profile (``users.info``, scope users:read.email)."""
    client = slack.web_client(token=click.bot_token, base_url=api_url)
    try:
        response = await client.users_info(user=click.slack_user_id)
    except SlackApiError as exc:
        log.warning("users.info for %s failed: %s", click.slack_user_id, exc.response.get("error"))
        return None
    profile = (response.get("user") or {}).get("profile") or {}
    email = profile.get("email")
    return str(email).strip().lower() if email else None


async def pick_up(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    runner: AfterCommitRunner,
    click: Click,
    email: str | None,
) -> str | None:
    """Claim for the matched user; returns what to tell them privately (None for the winner).

    The claim is the API's own service call in a unit of work of its own: one winner however
    the clicks and API calls race, and the Slack message is updated from the claim's event.
    """
    async with unit_of_work(sessionmaker, runner) as db:
        actor = None
        if email:
            actor = await db.scalar(
                select(User).where(
                    User.account_id == click.account_id,
                    func.lower(User.email) == email,
                    User.deleted_at.is_(None),
                )
            )
        if actor is None:
            return UNMATCHED
        if not is_senior(actor):
            return ROLE_REQUIRED
        handoff = await db.scalar(
            select(Handoff).where(
                Handoff.id == click.handoff_id, Handoff.account_id == click.account_id
            )
        )
        if handoff is None:
            return "This escalation no longer exists."
        try:
            async with db.begin_nested():
                await handoffs.claim_handoff(
                    db=db, actor=actor, session_id=handoff.session_id, handoff_id=handoff.id
                )
        except LifelineError as exc:
            return exc.detail
    return None


async def tell(*, click: Click, api_url: str, text: str) -> None:
    """An ephemeral message only the clicker sees. Never raises."""
    if not click.channel_id:
        return
    client = slack.web_client(token=click.bot_token, base_url=api_url)
    try:
        await client.chat_postEphemeral(
            channel=click.channel_id, user=click.slack_user_id, text=text
        )
    except Exception:
        log.warning("could not answer %s in Slack", click.slack_user_id, exc_info=True)
