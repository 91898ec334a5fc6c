"""webhook endpoints, Slack apps, and integration deliveries in the outbox

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:00:00.000000

Webhook and Slack deliveries are rows of the same outbox as email and push: a delivery may now
have no recipient (it goes to an endpoint or a channel) and no handoff (a webhook of a
transcript message), and carries the payload it sends. Every HTTP attempt of one is logged.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from lifeline.db import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("event_types", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(length=300), nullable=True),
        sa.Column("secret", sa.String(length=100), nullable=False),
        sa.Column("previous_secret", sa.String(length=100), nullable=True),
        sa.Column("previous_secret_expires_at", UTCDateTime(timezone=True), nullable=True),
        sa.Column("failing_since", UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_webhook_endpoints_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_account_id"), ["account_id"], unique=False
        )

    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("handoff_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.alter_column(
            "recipient_user_id", existing_type=sa.String(length=36), nullable=True
        )
        batch_op.add_column(sa.Column("endpoint_id", sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column("payload", sa.JSON(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_deliveries_endpoint_id_webhook_endpoints"),
            "webhook_endpoints",
            ["endpoint_id"],
            ["id"],
        )
        batch_op.create_index("ix_deliveries_endpoint", ["endpoint_id", "created_at"])

    op.create_table(
        "delivery_attempts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("delivery_id", sa.String(length=36), nullable=False),
        sa.Column("at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("response_excerpt", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_delivery_attempts_delivery_id_deliveries"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempts")),
    )
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_delivery_attempts_delivery", ["delivery_id", "at"])

    op.create_table(
        "slack_integrations",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("team_id", sa.String(length=32), nullable=False),
        sa.Column("team_name", sa.String(length=200), nullable=False),
        sa.Column("bot_token", sa.String(length=300), nullable=False),
        sa.Column("signing_secret", sa.String(length=200), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_slack_integrations_account_id_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_slack_integrations")),
        sa.UniqueConstraint("team_id", name=op.f("uq_slack_integrations_team_id")),
    )
    op.create_table(
        "slack_messages",
        sa.Column("handoff_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("channel_id", sa.String(length=100), nullable=False),
        sa.Column("ts", sa.String(length=40), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_slack_messages_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["handoffs.id"],
            name=op.f("fk_slack_messages_handoff_id_handoffs"),
        ),
        sa.PrimaryKeyConstraint("handoff_id", name=op.f("pk_slack_messages")),
    )
    op.create_table(
        "slack_interactions",
        sa.Column("key", sa.String(length=250), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_slack_interactions")),
    )


def downgrade() -> None:
    op.drop_table("slack_interactions")
    op.drop_table("slack_messages")
    op.drop_table("slack_integrations")
    with op.batch_alter_table("delivery_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_attempts_delivery")
    op.drop_table("delivery_attempts")
    # Integration rows have no recipient: they go before the column is required again.
    op.execute("DELETE FROM deliveries WHERE channel IN ('webhook', 'slack')")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_endpoint")
        batch_op.drop_constraint(
            batch_op.f("fk_deliveries_endpoint_id_webhook_endpoints"), type_="foreignkey"
        )
        batch_op.drop_column("payload")
        batch_op.drop_column("endpoint_id")
        batch_op.alter_column(
            "recipient_user_id", existing_type=sa.String(length=36), nullable=False
        )
        batch_op.alter_column("handoff_id", existing_type=sa.String(length=36), nullable=False)
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_account_id"))
    op.drop_table("webhook_endpoints")
