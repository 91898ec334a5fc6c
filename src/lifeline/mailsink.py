"""A local SMTP sink (aiosmtpd) for the demo: every message is kept as a file to read back."""

from __future__ import annotations

import email
import email.policy
import email.utils
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class _SaveToDirectory:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        (self.directory / name).write_bytes(envelope.content)
        return "250 Message accepted for delivery"


class MailSink:
    """aiosmtpd on loopback, in its own thread, saving each message under ``directory``."""

    def __init__(self, *, directory: Path, host: str = "127.0.0.1", port: int = 1025) -> None:
        self.directory = directory
        self.controller = Controller(_SaveToDirectory(directory), hostname=host, port=port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@dataclass(frozen=True)
class CaughtMail:
    name: str
    message: EmailMessage

    @property
    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""

    @property
    def html(self) -> str:
        part = self.message.get_body(preferencelist=("html",))
        return part.get_content() if part is not None else ""


def read_mail(
    directory: Path, limit: int = 50, *, recipients: Collection[str] | None = None
) -> list[CaughtMail]:
    """The newest messages the sink caught, newest first; only those addressed to one of
    ``recipients`` (email addresses, any case) when given."""
    if not directory.is_dir():
        return []
    wanted = None if recipients is None else {r.lower() for r in recipients}
    caught: list[CaughtMail] = []
    for f in sorted(directory.glob("*.eml"), reverse=True):
        if len(caught) >= limit:
            break
        message = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        if wanted is not None and not (_addressees(message) & wanted):
            continue
        caught.append(CaughtMail(f.name, message))
    return caught


def _addressees(message: EmailMessage) -> set[str]:
    headers = [str(value) for field in ("To", "Cc") for value in message.get_all(field, [])]
    return {address.lower() for _name, address in email.utils.getaddresses(headers) if address}
