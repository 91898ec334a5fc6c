"""Who sees an event: the live filter and the replay query agree, on SQLite and PostgreSQL."""

from __future__ import annotations

from lifeline.context import AppContext
from lifeline.realtime import service
from lifeline.realtime.audience import Viewer, may_see
from lifeline.realtime.events import record_event, restricted_audience
from lifeline.realtime.models import AUDIENCE_ACCOUNT, audience_user
from tests.support.factories import Factory


async def test_live_filter_and_replay_query_agree(ctx: AppContext, factory: Factory) -> None:
    team = await factory.team(creator="engineer", assignee="engineer", peer="engineer", adm="admin")
    other = await factory.team(stranger="admin")
    creator, assignee, peer = team["creator"], team["assignee"], team["peer"]
    audiences = {
        "account": AUDIENCE_ACCOUNT,
        "creator only": audience_user(creator.id),
        "creator+assignee": restricted_audience([creator.id, assignee.id]),
        "creator alone, restricted": restricted_audience([creator.id]),
    }
    ids: dict[str, int] = {}
    async with ctx.sessionmaker() as db, db.begin():
        for label, audience in audiences.items():
            event = await record_event(
                db=db, account_id=team.account.id, type="t", audience=audience, data={}
            )
            ids[label] = event.id
        foreign = await record_event(
            db=db, account_id=other.account.id, type="t", audience=AUDIENCE_ACCOUNT, data={}
        )

    expected = {
        creator.id: {"account", "creator only", "creator+assignee", "creator alone, restricted"},
        assignee.id: {"account", "creator+assignee"},
        peer.id: {"account"},
        team["adm"].id: {"account", "creator+assignee", "creator alone, restricted"},
        team.owner.id: {"account", "creator+assignee", "creator alone, restricted"},
        other["stranger"].id: set(),
    }
    people = [creator, assignee, peer, team["adm"], team.owner, other["stranger"]]
    for person in people:
        viewer = Viewer.of(person.user)
        live = {
            label
            for label, audience in audiences.items()
            if may_see(viewer, team.account.id, audience)
        }
        async with ctx.sessionmaker() as db:
            rows = await service.events_for_viewer(db=db, viewer=viewer, after_id=0)
        replayed = {label for label, event_id in ids.items() if event_id in {r.id for r in rows}}
        assert live == replayed == expected[person.id], person.name
        assert (foreign.id in {r.id for r in rows}) == (person is other["stranger"])


def test_another_account_never_matches() -> None:
    viewer = Viewer(user_id="u1", account_id="a1", is_manager=True)
    assert may_see(viewer, "a1", "account")
    assert not may_see(viewer, "a2", "account")
    assert not may_see(viewer, "a2", "user:u1")
    assert not may_see(viewer, "a1", "user:u2")
    assert not may_see(viewer, "a1", "something-else")
