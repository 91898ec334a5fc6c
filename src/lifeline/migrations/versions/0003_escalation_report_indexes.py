"""indexes for the escalation report

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 05:30:00.000000

One covering index per timestamp that puts a handoff in a report window (created, claimed,
resolved, cancelled), each led by account_id, so GET /analytics/escalations reads one
account's window from the indexes alone. The lifecycle ones skip rows where the timestamp is
still NULL. See lifeline/analytics/models.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: dict[str, tuple[list[str], str | None]] = {
    "ix_handoffs_report_created": (
        ["account_id", "created_at", "intent", "status", "created_by", "session_id"],
        None,
    ),
    "ix_handoffs_report_claimed": (
        ["account_id", "claimed_at", "intent", "created_at", "claimed_by"],
        "claimed_at IS NOT NULL",
    ),
    "ix_handoffs_report_resolved": (
        ["account_id", "resolved_at", "intent", "created_at"],
        "resolved_at IS NOT NULL",
    ),
    "ix_handoffs_report_cancelled": (
        ["account_id", "cancelled_at", "intent"],
        "cancelled_at IS NOT NULL",
    ),
}


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        for name, (columns, where) in INDEXES.items():
            partial = (
                {}
                if where is None
                else {
                    "sqlite_where": sa.text(where),
                    "postgresql_where": sa.text(where),
                }
            )
            batch_op.create_index(name, columns, unique=False, **partial)


def downgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        for name in reversed(INDEXES):
            batch_op.drop_index(name)
