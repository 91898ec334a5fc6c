"""Push: the escalation event reaches a recipient's live connections through the broker.

The event itself is published by the real-time layer after commit; this channel records, per
recipient, whether anyone was there to receive it.
"""

from __future__ import annotations

from lifeline.notifications.channels import ChannelResult, OnlineCheck
from lifeline.notifications.content import Notification

OFFLINE = "offline: no live connection"


class PushChannel:
    name = "push"

    def __init__(self, is_online: OnlineCheck) -> None:
        self._is_online = is_online

    async def deliver(self, notification: Notification) -> ChannelResult:
        if not notification.recipient.active:
            return ChannelResult.skipped("recipient removed")
        if await self._is_online(notification.recipient.id):
            return ChannelResult.sent()
        return ChannelResult.skipped(OFFLINE)

    async def aclose(self) -> None:
        return None
