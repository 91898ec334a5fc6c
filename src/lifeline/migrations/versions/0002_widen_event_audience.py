"""widen events.audience to hold a restricted list of several user ids

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 05:00:00.000000

"restricted:<id>,<id>" (a session's creator and assignee before it is escalated) is 84
characters; 48 held one id only, and PostgreSQL refuses the longer value.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column(
            "audience",
            existing_type=sa.String(length=48),
            type_=sa.String(length=400),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.alter_column(
            "audience",
            existing_type=sa.String(length=400),
            type_=sa.String(length=48),
            existing_nullable=False,
        )
