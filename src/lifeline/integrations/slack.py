"""Slack: the account's app (bot token, signing secret, channel) and the escalation's message.

The message is always rendered from the handoff's current state, so whichever event's delivery
runs last leaves it right: open with a Pick Up button, then "Picked up by X", and so on.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from lifeline.accounts.models import User
from lifeline.ai_sessions.models import AISession
from lifeline.db import utcnow
from lifeline.errors import Conflict, NotFound, Unprocessable
from lifeline.handoffs.models import Handoff, HandoffStatus
from lifeline.integrations.models import SlackIntegration

PICK_UP_ACTION = "pick_up"
OPEN_ACTION = "open"
TIMEOUT_SECONDS = 10
MAX_NOTE_CHARS = 2_000


def web_client(*, token: str, base_url: str) -> AsyncWebClient:
    """Slack's async Web API client; ``base_url`` is LIFELINE_SLACK_API_URL."""
    return AsyncWebClient(token=token, base_url=base_url.rstrip("/") + "/", timeout=TIMEOUT_SECONDS)


async def get_config(*, db: AsyncSession, account_id: str) -> SlackIntegration:
    config = await db.get(SlackIntegration, account_id)
    if config is None:
        raise NotFound("Slack is not connected")
    return config


async def save_config(
    *,
    db: AsyncSession,
    account_id: str,
    bot_token: str,
    signing_secret: str,
    channel: str,
    api_url: str,
) -> SlackIntegration:
    """Check the bot token with ``auth.test`` (which names the workspace), then save."""
    try:
        identity = await web_client(token=bot_token, base_url=api_url).auth_test()
    except SlackApiError as exc:
        error = exc.response.get("error") if exc.response is not None else None
        raise Unprocessable(f"bot_token: Slack refused it ({error or 'unknown error'})") from None
    except Exception as exc:
        raise Unprocessable(f"bot_token: could not reach Slack to check it ({exc})") from None
    team_id = str(identity.get("team_id") or "")
    if not team_id:
        raise Unprocessable("bot_token: Slack's auth.test named no workspace")
    taken = await db.scalar(
        select(SlackIntegration.account_id).where(
            SlackIntegration.team_id == team_id, SlackIntegration.account_id != account_id
        )
    )
    if taken is not None:
        raise Conflict("This Slack workspace is already connected to another account")
    now = utcnow()
    config = await db.get(SlackIntegration, account_id)
    if config is None:
        config = SlackIntegration(account_id=account_id, created_at=now)
        db.add(config)
    config.team_id = team_id
    config.team_name = str(identity.get("team") or "")
    config.bot_token = bot_token
    config.signing_secret = signing_secret
    config.channel = channel
    config.updated_at = now
    await db.flush()
    return config


async def delete_config(*, db: AsyncSession, account_id: str) -> None:
    config = await get_config(db=db, account_id=account_id)
    await db.delete(config)
    await db.flush()


@dataclass(frozen=True)
class HandoffView:
    id: str
    status: str
    session_title: str
    escalator_name: str
    claimer_name: str | None
    note: str
    created_at: datetime
    link: str


async def load_view(*, db: AsyncSession, handoff_id: str, base_url: str) -> HandoffView | None:
    escalator = aliased(User)
    claimer = aliased(User)
    row = (
        await db.execute(
            select(Handoff, AISession.title, escalator.name, claimer.name)
            .join(AISession, AISession.id == Handoff.session_id)
            .join(escalator, escalator.id == Handoff.created_by)
            .outerjoin(claimer, claimer.id == Handoff.claimed_by)
            .where(Handoff.id == handoff_id)
        )
    ).first()
    if row is None:
        return None
    handoff, title, escalator_name, claimer_name = row
    return HandoffView(
        id=handoff.id,
        status=handoff.status,
        session_title=title,
        escalator_name=escalator_name,
        claimer_name=claimer_name,
        note=handoff.note,
        created_at=handoff.created_at,
        link=f"{base_url.rstrip('/')}/sessions/{handoff.session_id}",
    )


def status_line(view: HandoffView) -> str:
    who = view.claimer_name or "someone"
    if view.status == HandoffStatus.OPEN:
        return "Waiting for someone to pick it up"
    if view.status == HandoffStatus.CLAIMED:
        return f"Picked up by {who}"
    if view.status == HandoffStatus.RESOLVED:
        return f"Resolved by {who}"
    if view.status == HandoffStatus.CANCELLED:
        return "Withdrawn by the escalator"
    if view.status == "expired":
        return "Expired: nobody picked it up"
    return str(view.status).capitalize()


def _plain(text: str, limit: int) -> dict[str, object]:
    return {"type": "plain_text", "text": text[:limit] or " ", "emoji": False}


def _escaped(text: str) -> str:
    """Slack mrkdwn treats &, < and > as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render(view: HandoffView) -> tuple[str, list[dict[str, object]]]:
    """The fallback text and the Block Kit blocks of the escalation's message."""
    state = status_line(view)
    epoch = int(view.created_at.timestamp())
    # Slack renders {ago} in each reader's view ("5 minutes ago"): the escalation's age.
    when = f"<!date^{epoch}^{{ago}}|{view.created_at.isoformat()}>"
    note = view.note.strip()[:MAX_NOTE_CHARS]
    quoted = "\n".join(f">{_escaped(line)}" for line in note.splitlines()) if note else ""
    summary = f"*{_escaped(view.escalator_name)}* escalated {when}"
    blocks: list[dict[str, object]] = [
        {"type": "header", "text": _plain(view.session_title, 150)},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"{summary}\n{quoted}" if quoted else summary},
        },
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _escaped(state)}]},
    ]
    buttons: list[dict[str, object]] = []
    if view.status == HandoffStatus.OPEN:
        buttons.append(
            {
                "type": "button",
                "action_id": PICK_UP_ACTION,
                "text": _plain("Pick Up", 75),
                "style": "primary",
                "value": view.id,
            }
        )
    buttons.append(
        {"type": "button", "action_id": OPEN_ACTION, "text": _plain("Open", 75), "url": view.link}
    )
    blocks.append({"type": "actions", "block_id": f"handoff:{view.id}", "elements": buttons})
    text = f"{view.escalator_name} escalated “{view.session_title}”: {state}"
    return text, blocks
