"""index for the hourly email cap

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 07:30:00.000000

Every escalation wave counts the account's email deliveries of the last hour (the per-account
cap on escalation emails, LIFELINE_EMAIL_CAP_PER_HOUR). Led by account_id and channel, ordered
by created_at and carrying status, that count is a short index range scan however many
deliveries the account has had before.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_deliveries_email_cap"
COLUMNS = ["account_id", "channel", "created_at", "status"]


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_index(NAME, COLUMNS, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index(NAME)
