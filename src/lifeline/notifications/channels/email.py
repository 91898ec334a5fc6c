"""Email over real SMTP (aiosmtplib): a small connection pool, timeouts, header-safe messages."""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from datetime import timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib

from lifeline.accounts.models import EmailPreference
from lifeline.config import Settings
from lifeline.notifications.channels import ChannelResult, OnlineCheck, PermanentFailure
from lifeline.notifications.content import Notification, Wave, render_email
from lifeline.notifications.models import DeliveryKind
from lifeline.notifications.outbox import OPTED_OUT, message_id_for

NO_SMTP = "no SMTP server configured"
ONLINE = "recipient online: told by push"
# Enough parallel SMTP transactions that one slow recipient never holds up the rest.
POOL_SIZE = 8
# Servers drop idle connections; one unused this long is closed rather than reused.
IDLE_SECONDS = 30.0
MAX_SUBJECT = 200
# A healthy server answers in milliseconds; a whole send taking two command timeouts is a failure.
SEND_BOUND_TIMEOUTS = 2
_BREAKS = re.compile(r"\s+")


def send_bound(settings: Settings) -> timedelta:
    """The longest one email send may take; the relay never starts one its lease can't cover."""
    return timedelta(seconds=settings.smtp_timeout_seconds * SEND_BOUND_TIMEOUTS)


def header_safe(value: str, *, limit: int = MAX_SUBJECT) -> str:
    """One line of text for a header: no CR, LF or other control or separator characters."""
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in value
    )
    cleaned = _BREAKS.sub(" ", cleaned).strip()
    return cleaned[: limit - 1] + "…" if len(cleaned) > limit else cleaned


@lru_cache(maxsize=512)
def _shared_header(name: str, value: str) -> Any:
    """Parse a header once for a whole wave: the same From, Subject and Date for every copy.

    Parsing is most of the cost of building a message; a parsed header is immutable, and
    ``EmailMessage`` takes one as is.
    """
    return policy.SMTP.header_factory(name, value)


@lru_cache(maxsize=32)
def _bodies(wave: Wave) -> tuple[str, EmailMessage, EmailMessage]:
    """A wave's subject and its text and HTML parts, rendered and encoded once for everyone.

    Parts are only read when a message is written out, so every copy can share them.
    """
    rendered = render_email(wave)
    text = EmailMessage(policy=policy.SMTP)
    text.set_content(rendered.text)
    html = EmailMessage(policy=policy.SMTP)
    html.set_content(rendered.html, subtype="html")
    for part in (text, html):
        del part["MIME-Version"]  # belongs on the message, once
    return rendered.subject, text, html


def build_message(notification: Notification, *, mail_from: str) -> EmailMessage:
    recipient = notification.recipient
    delivery = notification.delivery
    wave = notification.wave
    subject, text, html = _bodies(wave)
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = _shared_header("Subject", header_safe(subject))
    message["From"] = _shared_header("From", header_safe(mail_from, limit=320))
    try:
        message["To"] = Address(display_name=header_safe(recipient.name), addr_spec=recipient.email)
    except (ValueError, IndexError) as exc:
        raise PermanentFailure(f"not a deliverable address: {recipient.email!r}") from exc
    message["Message-ID"] = delivery.message_id
    message["Date"] = _shared_header("Date", formatdate(usegmt=True))
    message["MIME-Version"] = _shared_header("MIME-Version", "1.0")
    message["Auto-Submitted"] = _shared_header("Auto-Submitted", "auto-generated")
    message["X-Lifeline-Handoff"] = _shared_header("X-Lifeline-Handoff", wave.handoff_id)
    message["X-Lifeline-Kind"] = _shared_header("X-Lifeline-Kind", str(wave.kind))
    if wave.kind != DeliveryKind.ESCALATED:
        # Reminders and releases thread under the recipient's first email about it.
        first = message_id_for(f"{wave.handoff_id}:escalated", recipient.id)
        message["In-Reply-To"] = first
        message["References"] = first
    message.make_alternative()
    message.attach(text)
    message.attach(html)
    return message


class SmtpPool:
    """Up to ``size`` connections to the configured server, reused while they stay healthy."""

    def __init__(self, settings: Settings, *, size: int = POOL_SIZE) -> None:
        self._settings = settings
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []
        self._local_hostname = urlsplit(settings.base_url).hostname or "localhost"

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            username=s.smtp_username or None,
            password=s.smtp_password or None,
            start_tls=s.smtp_starttls,
            timeout=s.smtp_timeout_seconds,
            local_hostname=self._local_hostname,
        )
        await client.connect()
        return client

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < IDLE_SECONDS:
                return client
            client.close()
        return None

    async def _send_on(self, client: aiosmtplib.SMTP, message: EmailMessage, to: str) -> None:
        sender = parseaddr(self._settings.mail_from)[1] or self._settings.mail_from
        await client.send_message(message, sender=sender, recipients=[to])

    async def send(self, message: EmailMessage, *, to: str) -> None:
        # Bounded whatever the server does, waiting for a free connection included: every
        # command has a timeout and so has the whole, which the relay keeps inside the lease.
        async with asyncio.timeout(send_bound(self._settings).total_seconds()), self._slots:
            client = self._take_idle()
            if client is not None:
                try:
                    await self._send_on(client, message, to)
                except aiosmtplib.SMTPServerDisconnected:
                    client.close()  # went stale while idle: try once on a fresh connection
                except BaseException:
                    client.close()
                    raise
                else:
                    self._idle.append((client, time.monotonic()))
                    return
            client = await self._connect()
            try:
                await self._send_on(client, message, to)
            except BaseException:
                client.close()
                raise
            self._idle.append((client, time.monotonic()))

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for client, _since in idle:
            try:
                await asyncio.wait_for(client.quit(), timeout=1)
            except Exception:
                client.close()


def _permanent(exc: aiosmtplib.SMTPException) -> bool:
    """A 5xx refusal of this recipient or this message: the server has said no for good."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        return all(500 <= r.code < 600 for r in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPRecipientRefused | aiosmtplib.SMTPDataError):
        return 500 <= exc.code < 600
    return False


class EmailChannel:
    name = "email"

    def __init__(self, settings: Settings, is_online: OnlineCheck) -> None:
        self._settings = settings
        self._is_online = is_online
        self._pool = SmtpPool(settings) if settings.smtp_configured else None

    async def deliver(self, notification: Notification) -> ChannelResult:
        recipient = notification.recipient
        if self._pool is None:
            return ChannelResult.skipped(NO_SMTP)
        if not recipient.active:
            return ChannelResult.skipped("recipient removed")
        preference = recipient.email_notifications
        if preference == EmailPreference.NEVER:
            return ChannelResult.skipped(OPTED_OUT)
        if preference == EmailPreference.OFFLINE_ONLY and await self._is_online(recipient.id):
            return ChannelResult.skipped(ONLINE)
        message = build_message(notification, mail_from=self._settings.mail_from)
        try:
            await self._pool.send(message, to=recipient.email)
        except aiosmtplib.SMTPException as exc:
            if _permanent(exc):
                raise PermanentFailure(f"refused by the SMTP server: {exc}") from exc
            raise
        return ChannelResult.sent()

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
