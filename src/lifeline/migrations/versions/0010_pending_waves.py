"""the escalation's wave is one row in its transaction, expanded after commit

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08 09:00:00.000000

Escalating to a big team wrote two delivery rows per member inside the request's transaction.
Now the escalation writes one ``pending_waves`` row (who the wave goes to, as its policy step
says) and the per-recipient delivery rows are written right after commit, deleting the wave
row in the same transaction; a sweep expands any wave a process never got to.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from lifeline.db import UTCDateTime

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pending_waves",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("handoff_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event_key", sa.String(length=120), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("user_ids", sa.JSON(), nullable=False),
        sa.Column("excluded_user_ids", sa.JSON(), nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_pending_waves_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["handoff_id"], ["handoffs.id"], name=op.f("fk_pending_waves_handoff_id_handoffs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_waves")),
        sa.UniqueConstraint("event_key", name=op.f("uq_pending_waves_event_key")),
    )
    with op.batch_alter_table("pending_waves", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pending_waves_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    # A wave not yet expanded would be lost: expand it first (run a sweep).
    with op.batch_alter_table("pending_waves", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pending_waves_created_at"))
    op.drop_table("pending_waves")
