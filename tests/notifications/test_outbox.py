"""The outbox: who a wave goes to, one row per recipient per channel, and only after commit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, select, update

from lifeline.accounts.models import Role, User
from lifeline.context import AppContext
from lifeline.db import unit_of_work
from lifeline.handoffs import service as handoffs
from lifeline.handoffs.models import Handoff, Intent
from lifeline.notifications.models import Delivery, PendingWave
from lifeline.notifications.outbox import message_id_for
from lifeline.notifications.plugin import sweep_once
from tests.notifications.conftest import deliveries, relay_of, settle
from tests.support.factories import Factory, escalate, new_session
from tests.support.smtp import SmtpRecorder


async def test_emails_engineer_admin_owner_recipients_in_account(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(
        junior="engineer", senior="admin", peer="engineer", vic="viewer", gone="engineer"
    )
    other = await factory.team(stranger="admin")
    removed = await client.delete(f"/api/v1/users/{team['gone'].id}", headers=team.owner.headers)
    assert removed.status_code in (200, 204), removed.text

    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    rows = await settle(ctx, handoff["id"])

    expected = sorted([team.owner.email, team["senior"].email, team["peer"].email])
    assert smtp.recipients() == expected  # exactly one email each
    excluded = {team["junior"].id, team["vic"].id, team["gone"].id, other["stranger"].id}
    assert not excluded & {r.recipient_user_id for r in rows}
    by_channel = sorted((r.recipient_user_id, r.channel, r.status) for r in rows)
    assert by_channel == sorted(
        [(p.id, "email", "sent") for p in (team.owner, team["senior"], team["peer"])]
        + [(p.id, "push", "skipped") for p in (team.owner, team["senior"], team["peer"])]
    )
    assert {r.kind for r in rows} == {"escalated"}


async def test_skipped_for_park_intent(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])
    park = await escalate(client, team["junior"], session["id"], intent="park")
    await ctx.tasks.drain()
    await relay_of(ctx).sweep()

    assert await deliveries(ctx) == []
    assert smtp.messages == []
    view = await client.get(
        f"/api/v1/handoffs/{park['id']}/deliveries", headers=team["junior"].headers
    )
    assert view.json() == {"items": [], "next_cursor": None}


async def test_forced_rollback_after_handoff_insert_sends_nothing(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin")
    session = await new_session(client, team["junior"])

    with pytest.raises(RuntimeError, match="forced"):
        async with unit_of_work(ctx.sessionmaker, ctx.after_commit) as db:
            actor = await db.get(User, team["junior"].id)
            assert actor is not None
            await handoffs.create_handoff(
                db=db,
                actor=actor,
                session_id=session["id"],
                intent=Intent.ESCALATE,
                note="x",
                email_cap=ctx.settings.email_cap_per_hour,
            )
            # The wave exists inside the transaction, right beside the handoff (its delivery
            # rows are written from it after commit) …
            assert await db.scalar(select(func.count()).select_from(PendingWave)) == 1
            raise RuntimeError("forced rollback after the handoff insert")

    await ctx.tasks.drain()
    await sweep_once(ctx=ctx, relay=relay_of(ctx))
    await ctx.tasks.drain()
    async with ctx.sessionmaker() as db:
        assert await db.scalar(select(func.count()).select_from(Handoff)) == 0
        assert await db.scalar(select(func.count()).select_from(PendingWave)) == 0
    # … and leave with it: nothing to send, nothing sent.
    assert await deliveries(ctx) == []
    assert smtp.messages == []


async def test_email_preference_never_is_recorded_as_skipped(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", quiet="engineer", loud="engineer")
    changed = await client.patch(
        "/api/v1/me", headers=team["quiet"].headers, json={"email_notifications": "never"}
    )
    assert changed.status_code == 200, changed.text

    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    rows = await settle(ctx, handoff["id"])

    quiet = {r.channel: r for r in rows if r.recipient_user_id == team["quiet"].id}
    assert quiet["email"].status == "skipped"
    assert quiet["email"].last_error == "recipient opted out"
    assert quiet["push"].status == "skipped"  # push is still attempted: nobody is online
    assert smtp.recipients() == sorted([team.owner.email, team["loud"].email])


class _OnlineSet:
    """Stands in for the real-time layer's presence service (its contract: ``is_online`` and
    ``connection_counts``), counting how it is asked."""

    def __init__(self, *online: str) -> None:
        self.online = set(online)
        self.single: list[str] = []
        self.batches: list[list[str]] = []

    async def is_online(self, user_id: str) -> bool:
        self.single.append(user_id)
        return user_id in self.online

    async def connection_counts(self, user_ids: Iterable[str]) -> dict[str, int]:
        wanted = list(user_ids)
        self.batches.append(wanted)
        return {u: int(u in self.online) for u in wanted}


async def test_offline_only_email_goes_to_those_without_a_live_connection(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", here="engineer", away="engineer")
    for key in ("here", "away"):
        await client.patch(
            "/api/v1/me", headers=team[key].headers, json={"email_notifications": "offline_only"}
        )
    ctx.presence = _OnlineSet(team["here"].id)

    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    rows = await settle(ctx, handoff["id"])

    status = {(r.recipient_user_id, r.channel): (r.status, r.last_error) for r in rows}
    assert status[(team["here"].id, "push")] == ("sent", None)
    assert status[(team["here"].id, "email")] == ("skipped", "recipient online: told by push")
    assert status[(team["away"].id, "push")] == ("skipped", "offline: no live connection")
    assert status[(team["away"].id, "email")] == ("sent", None)
    assert smtp.recipients() == sorted([team.owner.email, team["away"].email])
    # Presence was asked once for the wave's people, not once per send.
    presence = ctx.presence
    assert isinstance(presence, _OnlineSet)
    assert presence.single == []
    assert len(presence.batches) == 1
    assert sorted(presence.batches[0]) == sorted([team.owner.id, team["here"].id, team["away"].id])


async def test_release_renotifies_as_a_new_wave(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin", peer="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    await settle(ctx, handoff["id"])
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"

    for _round in range(2):
        claimed = await client.post(f"{base}/claim", headers=team["senior"].headers)
        assert claimed.status_code == 200, claimed.text
        released = await client.post(f"{base}/release", headers=team["senior"].headers)
        assert released.status_code == 200, released.text
        await settle(ctx, handoff["id"])

    rows = await deliveries(ctx, handoff["id"])
    assert sorted({(r.kind, r.event_key) for r in rows}) == [
        ("escalated", f"{handoff['id']}:escalated"),
        ("released", f"{handoff['id']}:released:1"),
        ("released", f"{handoff['id']}:released:2"),
    ]
    peer_mail = smtp.to(team["peer"].email)
    assert len(peer_mail) == 3
    assert len({m.message_id for m in peer_mail}) == 3
    first = message_id_for(f"{handoff['id']}:escalated", team["peer"].id)
    assert peer_mail[0].message_id == first
    assert [m.message["In-Reply-To"] for m in peer_mail[1:]] == [first, first]
    assert all("Back in the queue" in m.message["Subject"] for m in peer_mail[1:])


async def test_release_wave_leaves_out_the_senior_who_released_it(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", senior="admin", peer="engineer")
    session = await new_session(client, team["junior"])
    handoff = await escalate(client, team["junior"], session["id"])
    await settle(ctx, handoff["id"])
    base = f"/api/v1/ai-sessions/{session['id']}/handoffs/{handoff['id']}"
    claimed = await client.post(f"{base}/claim", headers=team["senior"].headers)
    assert claimed.status_code == 200, claimed.text
    released = await client.post(f"{base}/release", headers=team["senior"].headers)
    assert released.status_code == 200, released.text
    rows = await settle(ctx, handoff["id"])

    released_to = {r.recipient_user_id for r in rows if r.kind == "released"}
    assert released_to == {team.owner.id, team["peer"].id}
    assert {r.recipient_user_id for r in rows if r.kind == "escalated"} == {
        team.owner.id,
        team["peer"].id,
        team["senior"].id,
    }
    # The releaser got the escalation email and nothing about their own release.
    assert len(smtp.to(team["senior"].email)) == 1
    assert len(smtp.to(team["peer"].email)) == 2
    assert smtp.to(team["junior"].email) == []


def test_message_id_is_derived_from_event_and_recipient() -> None:
    a = message_id_for("h1:escalated", "u1")
    assert a == message_id_for("h1:escalated", "u1")
    assert a != message_id_for("h1:escalated", "u2")
    assert a != message_id_for("h1:reminder:1", "u1")
    assert a.startswith("<") and a.endswith("@lifeline>")


async def test_a_wave_is_one_multi_row_insert_with_a_row_per_recipient_per_channel(
    client: httpx.AsyncClient, ctx: AppContext, factory: Factory, smtp: SmtpRecorder
) -> None:
    team = await factory.team(junior="engineer", vic="viewer")
    seniors = [
        await factory.person(team, key=f"s{n}", role=Role.ENGINEER if n % 2 else Role.ADMIN)
        for n in range(12)
    ]
    never = seniors[0]
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(
            update(User).where(User.id == never.id).values(email_notifications="never")
        )
    session = await new_session(client, team["junior"])
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(str(args[2]).upper())

    event.listen(ctx.engine.sync_engine, "before_cursor_execute", record)
    try:
        handoff = await escalate(client, team["junior"], session["id"])
        # The rows are written right after commit, from the wave the escalation wrote.
        await ctx.tasks.drain()
    finally:
        event.remove(ctx.engine.sync_engine, "before_cursor_execute", record)

    # One statement: a multi-row INSERT on SQLite, an INSERT … SELECT from the members on
    # PostgreSQL.
    inserts = [s for s in seen if "INSERT INTO DELIVERIES" in s]
    assert len(inserts) == 1, inserts
    async with ctx.sessionmaker() as db:
        rows = (
            await db.scalars(select(Delivery).where(Delivery.handoff_id == handoff["id"]))
        ).all()
    recipients = {team.owner.id} | {p.id for p in seniors}
    assert sorted((r.recipient_user_id, r.channel) for r in rows) == sorted(
        (user_id, channel) for user_id in recipients for channel in ("email", "push")
    )
    assert len({r.dedupe_key for r in rows}) == len(rows) == 2 * len(recipients)
    assert {r.event_key for r in rows} == {f"{handoff['id']}:escalated"}
    for r in rows:
        assert r.message_id == message_id_for(r.event_key, r.recipient_user_id or "")
        assert r.kind == "escalated"
    skipped = [
        (r.recipient_user_id, r.channel, r.last_error) for r in rows if r.status == "skipped"
    ]
    # Push may already be skipped by the relay for those offline; the opted-out email always is.
    assert (never.id, "email", "recipient opted out") in skipped
