"""agent briefs, answers and session sources

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 06:00:00.000000

AI agents escalate for themselves: a handoff carries the agent's structured brief and the
resolver's answer; a session records where it came from (web, api, mcp, claude-code, cli), the
MCP client's name, and the agent's own conversation id, unique per account and source, so the
same conversation escalated twice lands on one session.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EXTERNAL_INDEX = "uq_ai_sessions_account_source_external"


def upgrade() -> None:
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("brief", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("answer", sa.Text(), nullable=True))
    with op.batch_alter_table("ai_sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=32), server_default="api", nullable=False)
        )
        batch_op.add_column(sa.Column("client_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("external_id", sa.String(length=200), nullable=True))
        batch_op.create_index(EXTERNAL_INDEX, ["account_id", "source", "external_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("ai_sessions", schema=None) as batch_op:
        batch_op.drop_index(EXTERNAL_INDEX)
        batch_op.drop_column("external_id")
        batch_op.drop_column("client_name")
        batch_op.drop_column("source")
    with op.batch_alter_table("handoffs", schema=None) as batch_op:
        batch_op.drop_column("answer")
        batch_op.drop_column("brief")
