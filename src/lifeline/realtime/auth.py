"""The stream's own parameter: the client's last event id.

Who is connecting is decided by :func:`lifeline.deps.authenticate`, as for every request.
"""

from __future__ import annotations

from lifeline.errors import Unprocessable


def parse_last_event_id(header: str | None, query: str | None) -> int | None:
    """The client's last event id: the header (an EventSource's reconnect) before the query."""
    for field, value in (("Last-Event-ID", header), ("last_event_id", query)):
        if value is None or value.strip() == "":
            continue
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            raise Unprocessable(f"{field}: must be an event id (a non-negative integer)")
        return int(text)
    return None
