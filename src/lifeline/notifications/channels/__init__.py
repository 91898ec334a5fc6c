"""Delivery channels: each sends one notification and says what became of it.

A channel returns a :class:`ChannelResult` for outcomes it decided (sent, or skipped and why)
and raises for failures; the relay turns an exception into a retry or, when the channel marks it
:class:`PermanentFailure`, a dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lifeline.notifications.content import Notification
from lifeline.notifications.models import DeliveryStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChannelResult:
    status: DeliveryStatus
    reason: str | None = None

    @classmethod
    def sent(cls) -> ChannelResult:
        return cls(DeliveryStatus.SENT)

    @classmethod
    def skipped(cls, reason: str) -> ChannelResult:
        return cls(DeliveryStatus.SKIPPED, reason)


class PermanentFailure(Exception):
    """Retrying can't help (the server refused this message for good)."""


class DeliveryChannel(Protocol):
    name: str

    async def deliver(self, notification: Notification) -> ChannelResult: ...

    async def aclose(self) -> None: ...


class Presence(Protocol):
    async def is_online(self, user_id: str) -> bool: ...


async def is_online(services: Mapping[str, Any], user_id: str) -> bool:
    """Presence from the real-time layer; without one (or if it fails) everyone is offline."""
    presence: Presence | None = services.get("presence")
    if presence is None:
        return False
    try:
        return bool(await presence.is_online(user_id))
    except Exception:
        log.warning("presence lookup failed; counting %s as offline", user_id, exc_info=True)
        return False
