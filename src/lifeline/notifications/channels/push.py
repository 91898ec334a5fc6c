"""Push: the escalation event reaches a recipient's live connections through the broker.

The event itself is published by the real-time layer after commit; this channel records, per
recipient, whether anyone was there to receive it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lifeline.notifications.channels import ChannelResult, is_online
from lifeline.notifications.content import Notification

OFFLINE = "offline: no live connection"


class PushChannel:
    name = "push"

    def __init__(self, services: Mapping[str, Any]) -> None:
        # Read at send time: the real-time layer may register presence after this is built.
        self._services = services

    async def deliver(self, notification: Notification) -> ChannelResult:
        if not notification.recipient.active:
            return ChannelResult.skipped("recipient removed")
        if await is_online(self._services, notification.recipient.id):
            return ChannelResult.sent()
        return ChannelResult.skipped(OFFLINE)

    async def aclose(self) -> None:
        return None
