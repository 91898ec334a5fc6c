"""Response bodies of the real-time layer (the events themselves are the log's wire form)."""

from __future__ import annotations

from pydantic import BaseModel

from lifeline.accounts.schemas import UserRef


class PresenceItem(BaseModel):
    user: UserRef
    online: bool
    connections: int


class PresenceList(BaseModel):
    items: list[PresenceItem]
    next_cursor: str | None = None


__all__ = ["PresenceItem", "PresenceList", "UserRef"]
