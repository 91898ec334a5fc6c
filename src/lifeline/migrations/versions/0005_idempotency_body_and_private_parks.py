"""the request an Idempotency-Key was first used with; who parked a session, and its status before

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 06:20:00.000000

A key reused with a different body must be refused (422), not answered with the first
request's stored answer; each record now keeps a SHA-256 of its request's validated body.
Records written before have none and are compared by method and path only.

A park tells nobody: ai_sessions keeps who parked it (parked_by) and the status it had before
(status_before_park), which everyone else keeps seeing while it is parked.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("ai_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parked_by", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("status_before_park", sa.String(length=16), nullable=True))
        batch_op.create_foreign_key(
            "fk_ai_sessions_parked_by_users", "users", ["parked_by"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("ai_sessions", schema=None) as batch_op:
        batch_op.drop_constraint("fk_ai_sessions_parked_by_users", type_="foreignkey")
        batch_op.drop_column("status_before_park")
        batch_op.drop_column("parked_by")
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.drop_column("request_hash")
