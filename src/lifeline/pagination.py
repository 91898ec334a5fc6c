"""Keyset pagination over ``(created_at, id)`` with an opaque cursor."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from lifeline.errors import Unprocessable

T = TypeVar("T")
Q = TypeVar("Q", bound="Select[*tuple[Any, ...]]")
DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: str


def encode_cursor(created_at: datetime, id_: str) -> str:
    raw = json.dumps([created_at.isoformat(), id_]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> Cursor:
    """The position a cursor names; anything this API did not hand out is a 422.

    A cursor travels through the client, so it is checked like any input: a time that exists
    in UTC and an id of the form every id has (a UUID), before either reaches a query.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, id_ = json.loads(raw)
        parsed = datetime.fromisoformat(created_at)
        if parsed.tzinfo is None or not isinstance(id_, str) or str(uuid.UUID(id_)) != id_:
            raise ValueError
        return Cursor(parsed.astimezone(UTC), id_)
    except (ValueError, TypeError, OverflowError) as exc:
        raise Unprocessable("cursor: not a cursor this API returned") from exc


def keyset(
    query: Q,
    created_at: InstrumentedAttribute[datetime],
    id_: InstrumentedAttribute[str],
    *,
    cursor: str | None,
    limit: int,
    descending: bool,
) -> Q:
    """Order by (created_at, id) and start after the cursor; fetches one extra row to peek."""
    if cursor:
        after = decode_cursor(cursor)
        if descending:
            query = query.where(
                or_(
                    created_at < after.created_at,
                    and_(created_at == after.created_at, id_ < after.id),
                )
            )
        else:
            query = query.where(
                or_(
                    created_at > after.created_at,
                    and_(created_at == after.created_at, id_ > after.id),
                )
            )
    order = (created_at.desc(), id_.desc()) if descending else (created_at.asc(), id_.asc())
    return query.order_by(*order).limit(limit + 1)


def page(rows: Sequence[T], limit: int, key: Any) -> tuple[list[T], str | None]:
    """Split the peeked extra row off and build the next cursor from the last kept row."""
    items = list(rows[:limit])
    if len(rows) > limit and items:
        created_at, id_ = key(items[-1])
        return items, encode_cursor(created_at, id_)
    return items, None
