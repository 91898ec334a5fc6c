"""An endpoint's health: a success clears its failure run; 410, or 5 days of nothing but
failures, switches it off and tells the account's owners by email."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline.accounts.models import Role, User
from lifeline.config import Settings
from lifeline.integrations.delivery import ClaimedSend, SendResult
from lifeline.integrations.models import WebhookEndpoint
from lifeline.notifications.channels.email import SmtpPool, header_safe
from lifeline.notifications.models import Channel, DeliveryStatus

log = logging.getLogger(__name__)

FAILURE_WINDOW = timedelta(days=5)
FAILING_FOR_DAYS = "nothing but failures for 5 days"


@dataclass(frozen=True)
class Disabled:
    endpoint_id: str
    account_id: str
    url: str
    reason: str


async def track(
    *, db: AsyncSession, done: Sequence[tuple[ClaimedSend, SendResult]], now: datetime
) -> list[Disabled]:
    """Record what these sends say about their endpoints; returns those switched off now."""
    succeeded: set[str] = set()
    failed: set[str] = set()
    gone: dict[str, str] = {}
    for item, result in done:
        if item.channel != Channel.WEBHOOK or item.endpoint_id is None:
            continue
        if result.status == DeliveryStatus.SENT:
            succeeded.add(item.endpoint_id)
        elif result.status == DeliveryStatus.FAILED and result.attempt is not None:
            failed.add(item.endpoint_id)
            if result.disable_endpoint:
                gone[item.endpoint_id] = result.disable_endpoint
    failed -= succeeded
    if succeeded:
        await db.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(succeeded), WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None)
            .execution_options(synchronize_session=False)
        )
    if not failed:
        return []
    await db.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id.in_(failed), WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=now)
        .execution_options(synchronize_session=False)
    )
    candidates = await db.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id.in_(failed), WebhookEndpoint.enabled.is_(True)
        )
    )
    disabled: list[Disabled] = []
    for endpoint in candidates:
        reason = gone.get(endpoint.id)
        since = endpoint.failing_since
        if reason is None and since is not None and since <= now - FAILURE_WINDOW:
            reason = FAILING_FOR_DAYS
        if reason is None:
            continue
        endpoint.enabled = False
        endpoint.disabled_reason = reason
        endpoint.updated_at = now
        disabled.append(Disabled(endpoint.id, endpoint.account_id, endpoint.url, reason))
        log.warning("webhook %s disabled: %s", endpoint.id, reason)
    await db.flush()
    return disabled


async def tell_owners(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    disabled: Disabled,
) -> None:
    """Email the account's owners that an endpoint was switched off. Never raises."""
    if not settings.smtp_configured:
        log.warning("webhook %s disabled; no SMTP server to tell the owners", disabled.endpoint_id)
        return
    try:
        async with sessionmaker() as db, db.begin():
            owners = list(
                await db.scalars(
                    select(User).where(
                        User.account_id == disabled.account_id,
                        User.role == Role.OWNER,
                        User.deleted_at.is_(None),
                    )
                )
            )
        pool = SmtpPool(settings)
        try:
            for owner in owners:
                await pool.send(_message(settings, disabled, owner.email), to=owner.email)
        finally:
            await pool.aclose()
    except Exception:
        log.exception(
            "could not tell the owners that webhook %s was disabled", disabled.endpoint_id
        )


def _message(settings: Settings, disabled: Disabled, to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = header_safe(f"[Lifeline] Webhook disabled: {disabled.url}")
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain="lifeline")
    link = f"{settings.base_url.rstrip('/')}/settings#webhooks"
    message.set_content(
        f"Lifeline stopped sending events to the webhook {disabled.url}: {disabled.reason}.\n\n"
        f"Deliveries to it are kept; fix the receiver, enable the webhook again and replay "
        f"the failed ones from {link}\n"
    )
    return message
