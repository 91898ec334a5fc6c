"""Delivery channels: each sends one notification and says what became of it.

A channel returns a :class:`ChannelResult` for outcomes it decided (sent, or skipped and why)
and raises for failures; the relay turns an exception into a retry or, when the channel marks it
:class:`PermanentFailure`, a dead letter.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
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

    async def connection_counts(self, user_ids: Iterable[str]) -> dict[str, int]: ...


# Presence asked once for a whole batch of sends (see ``presence_for``): user id → connections.
_known_presence: ContextVar[Mapping[str, int] | None] = ContextVar(
    "lifeline_known_presence", default=None
)


@asynccontextmanager
async def presence_for(services: Mapping[str, Any], user_ids: Iterable[str]) -> AsyncIterator[None]:
    """The sends made inside (and the tasks started there) see the presence of ``user_ids``
    as asked once, in one round trip, on entry; whoever isn't in that answer, or everyone if
    asking failed, is looked up on their own as before."""
    presence: Presence | None = services.get("presence")
    wanted = sorted(set(user_ids))
    counts: Mapping[str, int] | None = None
    if presence is not None and wanted:
        try:
            counts = await presence.connection_counts(wanted)
        except Exception:
            log.warning("batched presence lookup failed; asking per recipient", exc_info=True)
    token = _known_presence.set(counts)
    try:
        yield
    finally:
        _known_presence.reset(token)


async def is_online(services: Mapping[str, Any], user_id: str) -> bool:
    """Presence from the real-time layer; without one (or if it fails) everyone is offline."""
    known = _known_presence.get()
    if known is not None and user_id in known:
        return known[user_id] > 0
    presence: Presence | None = services.get("presence")
    if presence is None:
        return False
    try:
        return bool(await presence.is_online(user_id))
    except Exception:
        log.warning("presence lookup failed; counting %s as offline", user_id, exc_info=True)
        return False
