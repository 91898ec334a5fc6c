"""This process's live connections: who may see what, what each was sent, and who is slow.

Every connection has its own bounded queue, so one slow client never holds up the others: when
its queue is full it is closed, and it replays from the event log when it reconnects. A
connection remembers the ids it was sent, which is what lets a (re)connect subscribe first,
replay from the log second and then drain the live queue with no gap and no duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from lifeline import metrics
from lifeline.accounts import service as accounts
from lifeline.after_commit import DropConnections, PublishEvent
from lifeline.db import new_id
from lifeline.realtime import service
from lifeline.realtime.audience import Viewer, may_see
from lifeline.realtime.broker import Notice
from lifeline.realtime.events import event_message
from lifeline.realtime.presence import MemoryPresence, Presence
from lifeline.realtime.waiters import Waiters

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 256
# How many sent ids a connection remembers for de-duplication.
SENT_MEMORY = 1024
CATCH_UP_LIMIT = 1000


@dataclass(frozen=True)
class Closing:
    code: int
    reason: str


# Signed out, token revoked, user removed or role changed: reconnecting either works (with the
# new role's view) or answers 401.
CLOSE_REVOKED = Closing(4401, "access changed; reconnect to continue if still signed in")
CLOSE_SLOW = Closing(1013, "too far behind; reconnect with the last event id")
CLOSE_RESYNC = Closing(1013, "missed too much; reconnect with the last event id")
CLOSE_SHUTDOWN = Closing(1001, "server shutting down")


@dataclass(frozen=True, slots=True)
class Envelope:
    """One event ready to send: encoded once, whatever the number of connections."""

    id: int
    type: str
    text: str
    # When the event was recorded (epoch seconds): push latency is measured from it.
    created_at: float = 0.0

    @classmethod
    def of(cls, message: dict[str, Any]) -> Envelope:
        created = message.get("created_at")
        return cls(
            id=int(message["id"]),
            type=str(message["type"]),
            text=json.dumps(message, separators=(",", ":")),
            created_at=datetime.fromisoformat(created).timestamp() if created else 0.0,
        )


class _Heartbeat:
    pass


HEARTBEAT = _Heartbeat()
Item = Envelope | _Heartbeat | Closing


class Mailbox:
    """A connection's queue: one writer (the hub), one reader (its sender), nothing else.

    Lighter than ``asyncio.Queue`` (no putters, no join bookkeeping), which counts when one
    process holds tens of thousands of mostly idle connections.
    """

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: deque[Item] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Item) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Item:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def snapshot(self) -> list[Item]:
        return list(self._items)


class Connection:
    """One WebSocket or SSE stream of one user."""

    def __init__(
        self,
        *,
        viewer: Viewer,
        token_id: str | None,
        web_session_id: str | None,
        client_last_id: int | None,
        latest_at_connect: int,
        queue_size: int,
    ) -> None:
        self.id = new_id()
        self.viewer = viewer
        self.token_id = token_id
        self.web_session_id = web_session_id
        # The client has everything up to ``client_last_id`` (its Last-Event-ID), if it said so.
        self.client_last_id = client_last_id
        # The newest event when it connected: catch-up after a broker gap starts above it.
        self.latest_at_connect = latest_at_connect if client_last_id is None else client_last_id
        self.mailbox = Mailbox()
        self.queue_size = queue_size
        self.closing: Closing | None = None
        self._sent: set[int] = set()
        self._sent_order: deque[int] = deque()
        self._forgotten = 0

    @property
    def user_id(self) -> str:
        return self.viewer.user_id

    def offer(self, item: Item) -> None:
        if self.closing is not None:
            return
        if len(self.mailbox) >= self.queue_size:
            log.info("closing a slow connection of user %s", self.user_id)
            self.close(CLOSE_SLOW)
            return
        self.mailbox.put(item)

    def close(self, closing: Closing) -> None:
        if self.closing is None:
            self.closing = closing
            # Past the bound on purpose: the consumer must always see it.
            self.mailbox.put(closing)

    def wants(self, event_id: int) -> bool:
        """Not yet sent on this connection and not already held by the client."""
        if self.client_last_id is not None and event_id <= self.client_last_id:
            return False
        return event_id > self._forgotten and event_id not in self._sent

    def mark_sent(self, event_id: int) -> None:
        self._sent.add(event_id)
        self._sent_order.append(event_id)
        if len(self._sent_order) > SENT_MEMORY:
            old = self._sent_order.popleft()
            self._sent.discard(old)
            self._forgotten = max(self._forgotten, old)

    @property
    def catch_up_from(self) -> int:
        """Events above this id might not have reached the connection."""
        return max(self.latest_at_connect, self._forgotten)


class Hub:
    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        heartbeat_seconds: float,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        catch_up_limit: int = CATCH_UP_LIMIT,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.heartbeat_seconds = heartbeat_seconds
        self.queue_size = queue_size
        self.catch_up_limit = catch_up_limit
        self.presence: Presence = MemoryPresence(self)
        # Agents' long-polls: not connections, never counted as presence.
        self.waiters = Waiters()
        self._by_account: dict[str, set[Connection]] = {}
        self._by_user: dict[str, set[Connection]] = {}
        # Live events held back, by account, while that account is caught up from the log after
        # a broker gap: nothing published once the broker is back may overtake what it missed.
        self._held: dict[str, list[PublishEvent]] = {}
        # Live events whose fan-out waits one turn of the event loop (see ``deliver``), in order.
        self._deferred: list[PublishEvent] = []
        self._heartbeat: asyncio.Task[None] | None = None

    # -- connections -------------------------------------------------------------------------

    def connect(
        self,
        viewer: Viewer,
        *,
        token_id: str | None = None,
        web_session_id: str | None = None,
        client_last_id: int | None = None,
        latest_at_connect: int = 0,
    ) -> Connection:
        """Subscribe a new connection; live events queue up from this moment."""
        conn = Connection(
            viewer=viewer,
            token_id=token_id,
            web_session_id=web_session_id,
            client_last_id=client_last_id,
            latest_at_connect=latest_at_connect,
            queue_size=self.queue_size,
        )
        self._by_account.setdefault(viewer.account_id, set()).add(conn)
        self._by_user.setdefault(viewer.user_id, set()).add(conn)
        self.presence.changed(viewer.user_id)
        metrics.connection_opened()
        return conn

    def disconnect(self, conn: Connection) -> None:
        if conn not in self._by_user.get(conn.user_id, ()):
            return  # already gone
        metrics.connection_closed()
        for index, key in (
            (self._by_account, conn.viewer.account_id),
            (self._by_user, conn.user_id),
        ):
            members = index.get(key)
            if members is not None:
                members.discard(conn)
                if not members:
                    del index[key]
        self.presence.changed(conn.user_id)

    def local_count(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def local_counts(self) -> dict[str, int]:
        return {user_id: len(conns) for user_id, conns in self._by_user.items()}

    @property
    def connection_count(self) -> int:
        return sum(len(conns) for conns in self._by_user.values())

    # -- what the broker hands us ------------------------------------------------------------

    def deliver(self, notice: Notice) -> None:
        if isinstance(notice, DropConnections):
            self.drop(notice)
            return
        woke = self.waiters.notify(notice)
        held = self._held.get(notice.account_id)
        if held is not None:
            held.append(notice)
            return
        if woke or self._deferred:
            # An agent's wait woke on this event: its answer goes out before the fan-out to
            # every socket of the account (a thousand sockets' writes would otherwise run ahead
            # of each step of the answer). One turn of the loop later, in order: once one event
            # is deferred, those after it queue behind it.
            if not self._deferred:
                asyncio.get_running_loop().call_soon(self._offer_deferred)
            self._deferred.append(notice)
            return
        self._offer(notice)

    def _offer_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for notice in deferred:
            self._offer(notice)

    def _offer(self, notice: PublishEvent) -> None:
        envelope: Envelope | None = None
        for conn in tuple(self._by_account.get(notice.account_id, ())):
            if may_see(conn.viewer, notice.account_id, notice.audience):
                envelope = envelope or Envelope.of(notice.message)
                conn.offer(envelope)

    def drop(self, notice: DropConnections) -> None:
        for conn in tuple(self._by_user.get(notice.user_id, ())):
            if notice.token_id is not None and conn.token_id != notice.token_id:
                continue
            if notice.web_session_id is not None and conn.web_session_id != notice.web_session_id:
                continue
            conn.close(CLOSE_REVOKED)

    def broker_lost(self) -> None:
        log.warning("live push from other processes paused until the broker is back")

    def broker_resuming(self) -> None:
        """The broker is back: from now on, hold each connected account's live events until
        its catch-up from the log is queued (``broker_resumed``), so they come in order."""
        for account_id in self._by_account:
            self._held.setdefault(account_id, [])

    async def broker_resumed(self) -> None:
        """Deliver from the log whatever was published while the broker was away, then what
        was held back meanwhile (each connection skips what it already has)."""
        self.broker_resuming()
        try:
            await self.presence.refresh()
            self.waiters.wake_all()
            for account_id in tuple(self._held):
                try:
                    await self._catch_up(account_id)
                finally:
                    self._release(account_id)
        finally:
            for account_id in tuple(self._held):
                self._release(account_id)

    def _release(self, account_id: str) -> None:
        for notice in self._held.pop(account_id, ()):
            self._offer(notice)

    async def _catch_up(self, account_id: str) -> None:
        conns = tuple(self._by_account.get(account_id, ()))
        if not conns:
            return
        start = min(conn.catch_up_from for conn in conns)
        async with self.sessionmaker() as db:
            rows = await service.events_for_account(
                db=db, account_id=account_id, after_id=start, limit=self.catch_up_limit + 1
            )
        if len(rows) > self.catch_up_limit:
            for conn in conns:
                conn.close(CLOSE_RESYNC)
            return
        for row in rows:
            envelope = Envelope.of(event_message(row))
            for conn in conns:
                if row.id > conn.catch_up_from and may_see(conn.viewer, account_id, row.audience):
                    conn.offer(envelope)

    # -- one connection's stream -------------------------------------------------------------

    async def stream(self, conn: Connection) -> AsyncIterator[Envelope | None]:
        """Replay after the client's last id, then live: each event once. ``None`` is a heartbeat.

        The connection is subscribed before this runs, so whatever commits during the replay is
        waiting in its queue, and what the replay already sent is skipped there.
        """
        if conn.client_last_id is not None:
            after = conn.client_last_id
            while conn.closing is None:
                async with self.sessionmaker() as db:
                    rows = await service.events_for_viewer(
                        db=db, viewer=conn.viewer, after_id=after
                    )
                for row in rows:
                    if conn.wants(row.id):
                        conn.mark_sent(row.id)
                        yield Envelope.of(event_message(row))
                if len(rows) < service.REPLAY_PAGE:
                    break
                after = rows[-1].id
        while True:
            item = await conn.mailbox.get()
            if isinstance(item, Closing):
                return
            if isinstance(item, _Heartbeat):
                yield None
                continue
            if conn.wants(item.id):
                conn.mark_sent(item.id)
                if item.created_at:
                    metrics.push_sent(time.time() - item.created_at)
                yield item

    # -- process lifetime --------------------------------------------------------------------

    async def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._beat(), name="realtime-heartbeat")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            for conns in tuple(self._by_user.values()):
                for conn in tuple(conns):
                    conn.offer(HEARTBEAT)
            try:
                await self.recheck_credentials()
            except Exception:
                log.exception("re-checking live connections' credentials failed")
            try:
                await self.presence.refresh()
            except Exception:
                log.exception("presence refresh failed")

    async def recheck_credentials(self) -> int:
        """Close connections whose token or web session no longer authenticates; → closed.

        A revocation normally reaches them at once through the broker; this covers those made
        where no broker reaches (``lifeline user set-password`` without Redis) or lost on the way.
        """
        conns = [conn for members in tuple(self._by_user.values()) for conn in tuple(members)]
        tokens = {conn.token_id for conn in conns if conn.token_id is not None}
        sessions = {conn.web_session_id for conn in conns if conn.web_session_id is not None}
        if not tokens and not sessions:
            return 0
        async with self.sessionmaker() as db:
            valid = await accounts.live_credentials(
                db=db, token_ids=tokens, web_session_ids=sessions
            )
        closed = 0
        for conn in conns:
            credential = conn.token_id or conn.web_session_id
            if credential is not None and credential not in valid and conn.closing is None:
                conn.close(CLOSE_REVOKED)
                closed += 1
        return closed

    async def close(self) -> None:
        for conns in tuple(self._by_user.values()):
            for conn in tuple(conns):
                conn.close(CLOSE_SHUTDOWN)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
