"""Who may see an event: the same rule in Python (live fan-out) and in SQL (replay)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, true

from lifeline.accounts.models import User, is_manager
from lifeline.realtime.events import RESTRICTED_PREFIX
from lifeline.realtime.models import AUDIENCE_ACCOUNT, Event, audience_user


@dataclass(frozen=True)
class Viewer:
    """The part of a connected user that visibility depends on, fixed at connect time."""

    user_id: str
    account_id: str
    is_manager: bool

    @classmethod
    def of(cls, user: User) -> Viewer:
        return cls(
            user_id=user.id,
            account_id=user.account_id,
            is_manager=is_manager(user),
        )


def may_see(viewer: Viewer, account_id: str, audience: str) -> bool:
    """Own account only; then the whole account, this user alone, or a restricted list."""
    if account_id != viewer.account_id:
        return False
    if audience == AUDIENCE_ACCOUNT or audience == audience_user(viewer.user_id):
        return True
    if audience.startswith(RESTRICTED_PREFIX):
        return viewer.is_manager or viewer.user_id in audience[len(RESTRICTED_PREFIX) :].split(",")
    return False


def visible_events(viewer: Viewer) -> ColumnElement[bool]:
    """:func:`may_see` as a WHERE clause over the event log."""
    # Ids are UUIDs: one can't occur inside another, so a substring match is a membership test.
    restricted = Event.audience.startswith(RESTRICTED_PREFIX, autoescape=True)
    listed = true() if viewer.is_manager else Event.audience.contains(viewer.user_id)
    return and_(
        Event.account_id == viewer.account_id,
        or_(
            Event.audience == AUDIENCE_ACCOUNT,
            Event.audience == audience_user(viewer.user_id),
            and_(restricted, listed),
        ),
    )
