"""sessions remember their first escalation

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:50:00.000000

Once escalated, a session is visible to every member of its account. The session now keeps
``escalated_at`` itself (set by the hand-off service through ``ai_sessions``), so the
visibility rule no longer looks into the handoffs table. Existing sessions take the time of
their first escalation.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import lifeline.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ai_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("escalated_at", lifeline.db.UTCDateTime(timezone=True), nullable=True)
        )
    op.execute(
        "UPDATE ai_sessions SET escalated_at = ("
        " SELECT MIN(handoffs.created_at) FROM handoffs"
        " WHERE handoffs.session_id = ai_sessions.id AND handoffs.intent = 'escalate')"
    )


def downgrade() -> None:
    with op.batch_alter_table("ai_sessions", schema=None) as batch_op:
        batch_op.drop_column("escalated_at")
