"""What crosses processes: notices survive the round trip; anything else is refused."""

from __future__ import annotations

import pytest

from lifeline.after_commit import DropConnections, PublishEvent
from lifeline.realtime.broker import decode, encode


def test_notices_round_trip_with_their_origin() -> None:
    event = PublishEvent(
        account_id="a1",
        audience="user:u1",
        message={"id": "12", "type": "handoff.parked", "created_at": "t", "data": {"x": 1}},
    )
    drop = DropConnections(user_id="u1", web_session_id="w1")
    assert decode(encode(event, origin="p1")) == ("p1", event)
    assert decode(encode(drop, origin="p2").encode()) == ("p2", drop)
    assert event.event_id == 12


@pytest.mark.parametrize(
    "raw",
    ["not json", "[]", '{"kind": "event"}', '{"kind": "other", "origin": "p"}', '{"x": 1}'],
)
def test_anything_else_is_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        decode(raw)
