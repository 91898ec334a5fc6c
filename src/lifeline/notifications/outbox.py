"""The transactional outbox: delivery rows written in the handoff's own transaction.

A wave is one notification event about one handoff (the escalation, a reminder, a release).
Each wave gets one row per recipient per channel, keyed ``{event_key}:{recipient}:{channel}``
so the same wave can never reach the same person twice. The rows commit or roll back with the
handoff; only after commit does a ``DispatchDeliveries`` intent hand them to the relay.

The escalation's own wave is written as one ``PendingWave`` row instead (a big team's two rows
per member would be most of the request), and expanded into its rows right after commit
(``ExpandWaves`` → :func:`expand_waves`), or by the next sweep if the process died first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy import (
    ARRAY,
    CursorResult,
    Integer,
    String,
    Table,
    delete,
    distinct,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from lifeline import after_commit
from lifeline.accounts.models import SENIOR_ROLES, EmailPreference, User
from lifeline.db import new_id, utcnow
from lifeline.handoffs.models import Handoff, Intent
from lifeline.notifications.models import (
    POLICY_KINDS,
    Channel,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    PendingWave,
)
from lifeline.policies.schemas import PolicyStep

# The in-process dispatcher sends a wave right after commit; the relay's sweep leaves fresh rows
# alone for this long so that it picks up only what the dispatcher never got to (a crash, a
# process without the dispatcher), instead of racing it for every new row.
SWEEP_GRACE = timedelta(seconds=5)
# The right-hand side of every Message-ID: constant, so a resend from any process (server or
# worker, whatever its base URL) carries exactly the same id as the first attempt.
MESSAGE_ID_DOMAIN = "lifeline"
OPTED_OUT = "recipient opted out"
EMAIL_CAP_REACHED = "hourly email cap reached"
EMAIL_CAP_WINDOW = timedelta(hours=1)
DELIVERIES = cast(Table, Delivery.__table__)
# A wave's rows go in as multi-row INSERTs: RETURNING makes SQLAlchemy batch an executemany
# into ``INSERT … VALUES (…), (…), …`` statements ("insertmanyvalues", 1,000 rows each by
# default) built from one cached statement, on SQLite and PostgreSQL alike.
_INSERT_WAVE = insert(DELIVERIES).returning(DELIVERIES.c.id)
# Waves written as one row in their transaction and expanded after commit: the escalation's,
# so that escalating to a big team costs the request one row, not two per member.
DEFERRED_KINDS = frozenset({DeliveryKind.ESCALATED})


async def emails_left_this_hour(
    *, db: AsyncSession, account_id: str, now: datetime, email_cap: int
) -> int:
    """How many more escalation emails the account may send before ``email_cap`` an hour
    (``Settings.email_cap_per_hour``, passed down by whoever writes the wave).

    Counted over the account's email rows created in the last hour that are, were or will be
    handed to SMTP (skipped ones cost nothing). Concurrent waves of one account each count
    before the other commits, so the cap can be overshot by at most the waves in flight.
    """
    used = await db.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.account_id == account_id,
            Delivery.channel == Channel.EMAIL,
            Delivery.status != DeliveryStatus.SKIPPED,
            Delivery.created_at > now - EMAIL_CAP_WINDOW,
        )
    )
    return max(0, email_cap - (used or 0))


class Recipient(Protocol):
    """What a wave needs to know of a person: who, and how they want email."""

    @property
    def id(self) -> str: ...

    @property
    def email_notifications(self) -> str: ...


@dataclass(frozen=True)
class WaveRecipient:
    id: str
    email_notifications: str


async def escalation_recipients(
    *, db: AsyncSession, handoff: Handoff, exclude_user_id: str | None = None
) -> list[WaveRecipient]:
    """Active engineers, admins and owners of the handoff's account, minus the escalator
    (and minus ``exclude_user_id``: whoever caused this wave needs no telling)."""
    return await step_recipients(
        db=db,
        handoff=handoff,
        roles=[str(r) for r in SENIOR_ROLES],
        user_ids=[],
        exclude_user_id=exclude_user_id,
    )


async def step_recipients(
    *,
    db: AsyncSession,
    handoff: Handoff,
    roles: Sequence[str],
    user_ids: Sequence[str],
    exclude_user_id: str | None = None,
) -> list[WaveRecipient]:
    """Active members of the handoff's account with one of ``roles`` or named in ``user_ids``;
    never a viewer, never the escalator, never ``exclude_user_id``."""
    return await _members(
        db=db,
        account_id=handoff.account_id,
        roles=roles,
        user_ids=user_ids,
        excluded=_excluded(handoff, exclude_user_id),
    )


def _excluded(handoff: Handoff, exclude_user_id: str | None) -> list[str]:
    return [handoff.created_by] + ([exclude_user_id] if exclude_user_id else [])


async def _members(
    *,
    db: AsyncSession,
    account_id: str,
    roles: Sequence[str],
    user_ids: Sequence[str],
    excluded: Sequence[str],
) -> list[WaveRecipient]:
    wanted = [r for r in roles if r in {str(x) for x in SENIOR_ROLES}]
    rows = await db.execute(
        select(User.id, User.email_notifications)
        .where(
            User.account_id == account_id,
            User.role.in_([str(r) for r in SENIOR_ROLES]),
            or_(User.role.in_(wanted), User.id.in_(list(user_ids))),
            User.deleted_at.is_(None),
            User.id.not_in(list(excluded)),
        )
        .order_by(User.created_at, User.id)
    )
    return [WaveRecipient(row.id, row.email_notifications) for row in rows]


async def wave_event_key(*, db: AsyncSession, handoff: Handoff, kind: DeliveryKind) -> str:
    """The escalation is one event; every reminder and every release is a new one, numbered."""
    if kind == DeliveryKind.ESCALATED:
        return f"{handoff.id}:escalated"
    earlier = await db.scalar(
        select(func.count(distinct(Delivery.event_key))).where(
            Delivery.handoff_id == handoff.id, Delivery.kind == kind
        )
    )
    return f"{handoff.id}:{kind}:{(earlier or 0) + 1}"


def step_event_key(handoff_id: str, *, round_: int, loop: int, step_number: int) -> str:
    """One firing of one policy step: the release round, the repeat and the step number."""
    return f"{handoff_id}:step:{round_}.{loop}.{step_number}"


def message_id_for(event_key: str, recipient_id: str) -> str:
    """Deterministic per event and recipient, so a resend after a crash is the same message."""
    digest = hashlib.sha256(f"{event_key}\n{recipient_id}".encode()).hexdigest()[:40]
    return f"<{digest}@{MESSAGE_ID_DOMAIN}>"


def dedupe_key_for(event_key: str, recipient_id: str, channel: Channel) -> str:
    return f"{event_key}:{recipient_id}:{channel}"


@dataclass
class EmailAllowance:
    """An account's emails left this hour, counted once and spent by several waves (a
    scheduler's batch) instead of counted again for each."""

    account_id: str
    left: int


async def email_allowance(*, db: AsyncSession, account_id: str, email_cap: int) -> EmailAllowance:
    left = await emails_left_this_hour(
        db=db, account_id=account_id, now=utcnow(), email_cap=email_cap
    )
    return EmailAllowance(account_id, left)


def _email_skip_reason(user: Recipient, emails_left: int) -> str | None:
    if user.email_notifications == EmailPreference.NEVER:
        return OPTED_OUT
    if emails_left <= 0:
        return EMAIL_CAP_REACHED
    return None


async def enqueue_wave(
    *,
    db: AsyncSession,
    handoff: Handoff,
    kind: DeliveryKind,
    exclude_user_id: str | None = None,
    email_cap: int,
    step: PolicyStep | None = None,
    event_key: str | None = None,
) -> int:
    """One wave of ``handoff``: to ``step``'s people on its channels (by default every
    engineer, admin and owner, push and email). Parks notify nobody; ``exclude_user_id`` (the
    person whose action caused the wave, such as a release) is left out.

    The escalation's own wave (``DEFERRED_KINDS``) is one ``PendingWave`` row here, expanded
    into its delivery rows right after commit (:func:`expand_waves`); every other wave's rows
    are written in this transaction. → how many delivery rows were written now.
    """
    if handoff.intent != Intent.ESCALATE:
        return 0
    if step is None:
        roles = [str(r) for r in SENIOR_ROLES]
        user_ids: Sequence[str] = []
        channels: Sequence[str] = (Channel.PUSH, Channel.EMAIL)
    else:
        roles = [str(r) for r in step.notify.roles]
        user_ids = step.notify.users
        channels = step.channels
    excluded = _excluded(handoff, exclude_user_id)
    key = event_key or await wave_event_key(db=db, handoff=handoff, kind=kind)
    if kind in DEFERRED_KINDS:
        wave = PendingWave(
            id=new_id(),
            handoff_id=handoff.id,
            account_id=handoff.account_id,
            kind=str(kind),
            event_key=key,
            roles=list(roles),
            user_ids=list(user_ids),
            excluded_user_ids=excluded,
            channels=[str(c) for c in channels],
            created_at=utcnow(),
        )
        db.add(wave)
        after_commit.record(db, after_commit.ExpandWaves(wave_ids=(wave.id,)))
        return 0
    return await _write_members_wave(
        db=db,
        handoff_id=handoff.id,
        account_id=handoff.account_id,
        kind=kind,
        event_key=key,
        roles=roles,
        user_ids=user_ids,
        excluded=excluded,
        channels=channels,
        email_cap=email_cap,
    )


async def _write_members_wave(
    *,
    db: AsyncSession,
    handoff_id: str,
    account_id: str,
    kind: DeliveryKind | str,
    event_key: str,
    roles: Sequence[str],
    user_ids: Sequence[str],
    excluded: Sequence[str],
    channels: Sequence[str],
    email_cap: int,
) -> int:
    """A wave to the account's members that ``roles``/``user_ids`` pick, minus ``excluded``:
    one statement on PostgreSQL, the members read and their rows built in Python elsewhere."""
    kind = DeliveryKind(kind)
    if db.get_bind().dialect.name == "postgresql":
        return await _write_wave_in_sql(
            db=db,
            handoff_id=handoff_id,
            account_id=account_id,
            kind=kind,
            event_key=event_key,
            roles=roles,
            user_ids=user_ids,
            excluded=excluded,
            channels=channels,
            email_cap=email_cap,
        )
    recipients = await _members(
        db=db, account_id=account_id, roles=roles, user_ids=user_ids, excluded=excluded
    )
    if not recipients:
        return 0
    return await write_wave(
        db=db,
        handoff_id=handoff_id,
        account_id=account_id,
        kind=kind,
        event_key=event_key,
        recipients=recipients,
        channels=channels,
        email_cap=email_cap,
    )


async def expand_waves(
    *, db: AsyncSession, email_cap: int, wave_ids: Sequence[str] | None = None, limit: int = 50
) -> int:
    """Write the delivery rows of these pending waves (by default the oldest ``limit`` of
    all), each as its wave says, and delete the waves in the same transaction: a wave is
    expanded once, whoever else tries (a concurrent expander finds it gone, or waits for this
    transaction and then finds it gone). Their pending rows are dispatched after commit, like
    any wave's. → how many waves were expanded.
    """
    table = cast(Table, PendingWave.__table__)
    if wave_ids is not None:
        which = table.c.id.in_(list(wave_ids))
    else:
        oldest = select(table.c.id).order_by(table.c.created_at).limit(limit)
        which = table.c.id.in_(oldest.scalar_subquery())
    taken = (await db.execute(delete(table).where(which).returning(*table.c))).all()
    for wave in sorted(taken, key=lambda w: (w.created_at, w.id)):
        await _write_members_wave(
            db=db,
            handoff_id=wave.handoff_id,
            account_id=wave.account_id,
            kind=wave.kind,
            event_key=wave.event_key,
            roles=wave.roles,
            user_ids=wave.user_ids,
            excluded=wave.excluded_user_ids,
            channels=wave.channels,
            email_cap=email_cap,
        )
    return len(taken)


async def write_wave(
    *,
    db: AsyncSession,
    handoff_id: str,
    account_id: str,
    kind: DeliveryKind,
    event_key: str,
    recipients: Sequence[Recipient],
    channels: Sequence[str],
    email_cap: int,
    allowance: EmailAllowance | None = None,
) -> int:
    """Write one delivery row per recipient per channel, built in Python (every wave on
    SQLite, and the scheduler's and the timeouts' waves on PostgreSQL too).

    Email to someone whose preference is ``never``, or beyond the account's hourly email cap
    (``email_cap``; or what is left of it in ``allowance``, when a batch shares one), is
    written as ``skipped`` with why, so the audit trail shows they were considered; push is
    never capped; ``offline_only`` is decided at send time, when presence is known. The rows
    go in as one multi-row INSERT (a few for a very big team), not one ORM object each; →
    how many were written.
    """
    now = utcnow()
    wanted = [c for c in (Channel.PUSH, Channel.EMAIL) if c in channels]
    if Channel.EMAIL not in wanted:
        emails_left = 0
    elif allowance is not None:
        emails_left = allowance.left
    else:
        emails_left = await emails_left_this_hour(
            db=db, account_id=account_id, now=now, email_cap=email_cap
        )
    rows: list[dict[str, Any]] = []
    pending: list[str] = []
    for user in recipients:
        message_id = message_id_for(event_key, user.id)
        email_skipped = _email_skip_reason(user, emails_left)
        if email_skipped is None and Channel.EMAIL in wanted:
            emails_left -= 1
        for channel in wanted:
            skipped = email_skipped if channel == Channel.EMAIL else None
            row_id = new_id()
            if not skipped:
                pending.append(row_id)
            rows.append(
                {
                    "id": row_id,
                    "handoff_id": handoff_id,
                    "account_id": account_id,
                    "recipient_user_id": user.id,
                    "endpoint_id": None,
                    "payload": None,
                    "channel": str(channel),
                    "kind": str(kind),
                    "event_key": event_key,
                    "dedupe_key": dedupe_key_for(event_key, user.id, channel),
                    "message_id": message_id,
                    "status": DeliveryStatus.SKIPPED if skipped else DeliveryStatus.PENDING,
                    "attempts": 0,
                    "last_error": skipped,
                    "next_attempt_at": now if skipped else now + SWEEP_GRACE,
                    "lease_token": None,
                    "lease_expires_at": None,
                    "created_at": now,
                    "sent_at": None,
                }
            )
    if allowance is not None and Channel.EMAIL in wanted:
        allowance.left = emails_left
    if rows:
        # Anything of this session's still to be flushed goes first (the handoff the rows
        # point to, for one).
        await db.flush()
        await db.execute(_INSERT_WAVE, rows)
    if pending:
        after_commit.record(db, after_commit.DispatchDeliveries(delivery_ids=tuple(pending)))
    return len(rows)


# PostgreSQL writes a wave in one statement, from the members it goes to: the same rows, in
# the same order, as ``write_wave`` builds from ``step_recipients`` in Python (which SQLite
# keeps), without a round of 2,000 rows through the driver. The email cap is the same rule:
# the n-th member not opted out, in the recipients' order, gets an email only while n ≤ the
# emails left this hour. The Message-ID is ``message_id_for`` computed by the database.
_WAVE_FROM_MEMBERS = text(
    f"""
WITH members AS (
    SELECT u.id, u.email_notifications,
           row_number() OVER w AS nth,
           count(*) FILTER (WHERE u.email_notifications <> '{EmailPreference.NEVER}') OVER w
               AS nth_email
    FROM users u
    WHERE u.account_id = CAST(:account_id AS varchar)
      AND u.role = ANY(CAST(:senior_roles AS varchar[]))
      AND (u.role = ANY(CAST(:roles AS varchar[])) OR u.id = ANY(CAST(:user_ids AS varchar[])))
      AND u.deleted_at IS NULL
      AND u.id <> ALL(CAST(:excluded AS varchar[]))
    WINDOW w AS (ORDER BY u.created_at, u.id)
),
wave AS (
    SELECT m.id AS recipient_user_id, c.channel, m.nth, c.ord,
           CASE WHEN c.channel <> '{Channel.EMAIL}' THEN NULL
                WHEN m.email_notifications = '{EmailPreference.NEVER}' THEN '{OPTED_OUT}'
                WHEN m.nth_email > CAST(:emails_left AS integer) THEN '{EMAIL_CAP_REACHED}'
           END AS skipped
    FROM members m
    CROSS JOIN unnest(CAST(:channels AS varchar[])) WITH ORDINALITY AS c (channel, ord)
),
written AS (
    INSERT INTO deliveries (
        id, handoff_id, account_id, recipient_user_id, channel, kind, event_key, dedupe_key,
        message_id, status, attempts, last_error, next_attempt_at, created_at
    )
    SELECT CAST(gen_random_uuid() AS varchar),
           CAST(:handoff_id AS varchar),
           CAST(:account_id AS varchar),
           w.recipient_user_id,
           w.channel,
           CAST(:kind AS varchar),
           CAST(:event_key AS varchar),
           CAST(:event_key AS varchar) || ':' || w.recipient_user_id || ':' || w.channel,
           '<' || left(encode(sha256(convert_to(
               CAST(:event_key AS varchar) || chr(10) || w.recipient_user_id, 'UTF8'
           )), 'hex'), 40) || '@{MESSAGE_ID_DOMAIN}>',
           CASE WHEN w.skipped IS NULL THEN '{DeliveryStatus.PENDING}'
                ELSE '{DeliveryStatus.SKIPPED}' END,
           0,
           w.skipped,
           CASE WHEN w.skipped IS NULL THEN CAST(:due_at AS timestamptz)
                ELSE CAST(:now AS timestamptz) END,
           CAST(:now AS timestamptz)
    FROM wave w
    ORDER BY w.nth, w.ord
    RETURNING id, status
)
SELECT count(*) AS written,
       coalesce(array_agg(id) FILTER (WHERE status = '{DeliveryStatus.PENDING}'), '{{}}')
           AS pending
FROM written
"""
).columns(written=Integer, pending=ARRAY(String))


async def _write_wave_in_sql(
    *,
    db: AsyncSession,
    handoff_id: str,
    account_id: str,
    kind: DeliveryKind,
    event_key: str,
    roles: Sequence[str],
    user_ids: Sequence[str],
    excluded: Sequence[str],
    channels: Sequence[str],
    email_cap: int,
) -> int:
    """A members' wave on PostgreSQL: the members read and the rows written in one statement."""
    now = utcnow()
    wanted = [str(c) for c in (Channel.PUSH, Channel.EMAIL) if c in channels]
    emails_left = 0
    if Channel.EMAIL in wanted:
        emails_left = await emails_left_this_hour(
            db=db, account_id=account_id, now=now, email_cap=email_cap
        )
    # The handoff the rows point to, and anything else of this session's, goes first.
    await db.flush()
    row = (
        await db.execute(
            _WAVE_FROM_MEMBERS,
            {
                "account_id": account_id,
                "senior_roles": sorted(str(r) for r in SENIOR_ROLES),
                "roles": list(roles),
                "user_ids": list(user_ids),
                "excluded": list(excluded),
                "emails_left": emails_left,
                "channels": wanted,
                "handoff_id": handoff_id,
                "kind": str(kind),
                "event_key": event_key,
                "due_at": now + SWEEP_GRACE,
                "now": now,
            },
        )
    ).one()
    pending: list[str] = row.pending
    if pending:
        after_commit.record(db, after_commit.DispatchDeliveries(delivery_ids=tuple(pending)))
    written: int = row.written
    return written


async def skip_pending_policy_deliveries(*, db: AsyncSession, handoff_id: str, reason: str) -> int:
    """Every policy notification of this handoff not yet sent never will be: ``reason`` says why.

    Run in the transaction that takes the handoff out of the queue. A row a sender holds at
    that moment is locked by it (see ``relay``): this waits for the send to finish, and then
    leaves it as sent.
    """
    result: CursorResult[Any] = await db.execute(  # type: ignore[assignment]
        update(Delivery)
        .where(
            Delivery.handoff_id == handoff_id,
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.kind.in_([str(k) for k in POLICY_KINDS]),
        )
        .values(status=DeliveryStatus.SKIPPED, last_error=reason, lease_token=None)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
