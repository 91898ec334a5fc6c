"""Delivery channels: each sends one notification and says what became of it.

A channel returns a :class:`ChannelResult` for outcomes it decided (sent, or skipped and why)
and raises for failures; the relay turns an exception into a retry or, when the channel marks it
:class:`PermanentFailure`, a dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

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


# Whether a user has a live connection anywhere (``AppContext.is_online``): read at send time,
# since the real-time layer may start after the channels are built.
OnlineCheck = Callable[[str], Awaitable[bool]]
