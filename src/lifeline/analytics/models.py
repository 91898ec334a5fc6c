"""The indexes the escalation report reads instead of the handoffs table (migration 0003).

One per timestamp that puts a handoff in a window, each led by ``account_id`` and carrying
the few columns its branch of the report needs, so every branch is an index-only range scan
over one account's window. The three lifecycle ones skip the rows where their timestamp is
still NULL; a range condition on the timestamp lets both databases use them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Index, text

from lifeline.handoffs.models import Handoff

handoffs = Handoff.__table__


def _partial(column: str) -> dict[str, Any]:
    where = text(f"{column} IS NOT NULL")
    return {"sqlite_where": where, "postgresql_where": where}


REPORT_INDEXES = (
    Index(
        "ix_handoffs_report_created",
        handoffs.c.account_id,
        handoffs.c.created_at,
        handoffs.c.intent,
        handoffs.c.status,
        handoffs.c.created_by,
        handoffs.c.session_id,
    ),
    Index(
        "ix_handoffs_report_claimed",
        handoffs.c.account_id,
        handoffs.c.claimed_at,
        handoffs.c.intent,
        handoffs.c.created_at,
        handoffs.c.claimed_by,
        **_partial("claimed_at"),
    ),
    Index(
        "ix_handoffs_report_resolved",
        handoffs.c.account_id,
        handoffs.c.resolved_at,
        handoffs.c.intent,
        handoffs.c.created_at,
        **_partial("resolved_at"),
    ),
    Index(
        "ix_handoffs_report_cancelled",
        handoffs.c.account_id,
        handoffs.c.cancelled_at,
        handoffs.c.intent,
        **_partial("cancelled_at"),
    ),
    Index(
        "ix_handoffs_report_expired",
        handoffs.c.account_id,
        handoffs.c.expired_at,
        handoffs.c.intent,
        **_partial("expired_at"),
    ),
)
