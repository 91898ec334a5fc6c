"""escalation policies: per-account policy, per-escalation snapshot and schedule

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:00:00.000000

The account's single reminder interval becomes its escalation policy (the default one: everyone
engineer and up at once, one reminder after the interval), which is from now on the only source
of reminders. Open and claimed escalations take that policy as their snapshot and get their
schedule row: an open one not yet reminded is due for its reminder step at the same moment as
before; a claimed one for its "still on it?" reminder.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

import lifeline.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVERYONE = {"roles": ["engineer", "admin", "owner"], "users": []}
CLAIM_REMINDER_MINUTES = 240


def _policy(reminder_minutes: int) -> dict[str, Any]:
    return {
        "steps": [
            {"after_minutes": 0, "notify": EVERYONE, "channels": ["push", "email"]},
            {"after_minutes": reminder_minutes, "notify": EVERYONE, "channels": ["push", "email"]},
        ],
        "repeat": 0,
        "expire_after_minutes": None,
        "claim_reminder_minutes": CLAIM_REMINDER_MINUTES,
        "auto_release_minutes": None,
    }


def _aware(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _drop_column(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # Native since SQLite 3.35; avoids rebuilding a table that carries partial indexes.
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_column(table, column)


def upgrade() -> None:
    utc = lifeline.db.UTCDateTime(timezone=True)
    op.create_table(
        "escalation_policies",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("policy", sa.JSON(), nullable=False),
        sa.Column("updated_at", utc, nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_escalation_policies_account_id_accounts")
        ),
        sa.ForeignKeyConstraint(
            ["updated_by"], ["users.id"], name=op.f("fk_escalation_policies_updated_by_users")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_escalation_policies")),
    )
    op.create_table(
        "escalation_schedules",
        sa.Column("handoff_id", sa.String(length=36), nullable=False),
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("next_step_at", utc, nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("loop", sa.Integer(), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("lease_token", sa.String(length=36), nullable=True),
        sa.Column("lease_expires_at", utc, nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_escalation_schedules_account_id_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["handoff_id"],
            ["handoffs.id"],
            name=op.f("fk_escalation_schedules_handoff_id_handoffs"),
        ),
        sa.PrimaryKeyConstraint("handoff_id", name=op.f("pk_escalation_schedules")),
    )
    op.create_index("ix_escalation_schedules_due", "escalation_schedules", ["next_step_at"])
    op.add_column("handoffs", sa.Column("expired_at", utc, nullable=True))
    op.add_column("handoffs", sa.Column("policy", sa.JSON(), nullable=True))
    for name in ("policy_round", "policy_step"):
        op.add_column("handoffs", sa.Column(name, sa.Integer(), nullable=False, server_default="0"))
    op.add_column("handoffs", sa.Column("claimed_step", sa.Integer(), nullable=True))
    op.create_index(
        "ix_handoffs_report_expired",
        "handoffs",
        ["account_id", "expired_at", "intent"],
        sqlite_where=sa.text("expired_at IS NOT NULL"),
        postgresql_where=sa.text("expired_at IS NOT NULL"),
    )
    _migrate_accounts()
    _drop_column("handoffs", "reminded_at")
    _drop_column("accounts", "reminder_minutes")


def _migrate_accounts() -> None:
    bind = op.get_bind()
    utc = lifeline.db.UTCDateTime(timezone=True)
    policies = sa.table(
        "escalation_policies",
        sa.column("account_id", sa.String),
        sa.column("policy", sa.JSON),
        sa.column("updated_at", utc),
    )
    schedules = sa.table(
        "escalation_schedules",
        sa.column("handoff_id", sa.String),
        sa.column("account_id", sa.String),
        sa.column("phase", sa.String),
        sa.column("next_step_at", utc),
        sa.column("step", sa.Integer),
        sa.column("loop", sa.Integer),
        sa.column("round", sa.Integer),
    )
    handoffs = sa.table(
        "handoffs",
        sa.column("id", sa.String),
        sa.column("policy", sa.JSON),
        sa.column("policy_step", sa.Integer),
    )
    now = datetime.now(UTC)
    minutes: dict[str, int] = {
        row[0]: row[1] for row in bind.execute(sa.text("SELECT id, reminder_minutes FROM accounts"))
    }
    if minutes:
        op.bulk_insert(
            policies,
            [
                {"account_id": a, "policy": _policy(m), "updated_at": now}
                for a, m in minutes.items()
            ],
        )
    live = bind.execute(
        sa.text(
            "SELECT id, account_id, status, queued_at, reminded_at, claimed_at FROM handoffs "
            "WHERE intent = 'escalate' AND status IN ('open', 'claimed')"
        )
    ).all()
    rows = []
    for hid, account_id, status, queued_at, reminded_at, claimed_at in live:
        policy = _policy(minutes[account_id])
        fired = 2 if reminded_at is not None else 1
        bind.execute(
            handoffs.update().where(handoffs.c.id == hid).values(policy=policy, policy_step=fired)
        )
        if status == "claimed" and claimed_at is not None:
            due = _aware(claimed_at) + timedelta(minutes=CLAIM_REMINDER_MINUTES)
            rows.append((hid, account_id, "claimed", due, 0))
        elif status == "open" and reminded_at is None:
            due = _aware(queued_at) + timedelta(minutes=minutes[account_id])
            rows.append((hid, account_id, "policy", due, 1))
    if rows:
        op.bulk_insert(
            schedules,
            [
                {
                    "handoff_id": hid,
                    "account_id": account_id,
                    "phase": phase,
                    "next_step_at": due,
                    "step": step,
                    "loop": 0,
                    "round": 0,
                }
                for hid, account_id, phase, due, step in rows
            ],
        )


def downgrade() -> None:
    utc = lifeline.db.UTCDateTime(timezone=True)
    op.add_column(
        "accounts",
        sa.Column("reminder_minutes", sa.Integer(), nullable=False, server_default="10"),
    )
    with op.batch_alter_table("accounts") as batch_op:
        batch_op.alter_column("reminder_minutes", server_default=None)
    op.add_column("handoffs", sa.Column("reminded_at", utc, nullable=True))
    op.drop_index("ix_handoffs_report_expired", table_name="handoffs")
    for name in ("claimed_step", "policy_step", "policy_round", "policy", "expired_at"):
        _drop_column("handoffs", name)
    op.drop_index("ix_escalation_schedules_due", table_name="escalation_schedules")
    op.drop_table("escalation_schedules")
    op.drop_table("escalation_policies")
