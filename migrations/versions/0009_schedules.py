"""Schedules: the flowstore_schedules table (cron or interval, time zone, missed-tick policy,
the next tick) and flowstore_schedule_ticks, one row per tick started.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Spelled out here, as in 0001, so this revision stays as it was written.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
NAME = sa.String(length=200)

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flowstore_schedules",
        sa.Column("name", NAME, nullable=False),
        sa.Column("workflow", NAME, nullable=False),
        sa.Column("cron", sa.String(length=200), nullable=True),
        sa.Column("every_seconds", sa.Float(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("inputs", JSON_VALUE, nullable=False),
        sa.Column("missed", sa.String(length=16), nullable=False),
        sa.Column("catch_up_limit", sa.Integer(), nullable=False),
        sa.Column("grace_seconds", sa.Float(), nullable=False),
        sa.Column("queue", NAME, nullable=True),
        sa.Column("queue_key", NAME, nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("next_at", TIMESTAMP, nullable=False),
        sa.Column("last_tick_at", TIMESTAMP, nullable=True),
        sa.Column("started", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("paused_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "(cron IS NULL AND every_seconds > 0) OR (cron IS NOT NULL AND every_seconds IS NULL)",
            name=op.f("ck_flowstore_schedules_timing"),
        ),
        sa.CheckConstraint(
            "missed IN ('skip', 'catch_up')", name=op.f("ck_flowstore_schedules_missed")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_flowstore_schedules")),
    )
    op.create_index("ix_flowstore_schedules_next_at", "flowstore_schedules", ["next_at"])
    op.create_table(
        "flowstore_schedule_ticks",
        sa.Column("schedule", NAME, nullable=False),
        sa.Column("tick_at", TIMESTAMP, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["schedule"],
            ["flowstore_schedules.name"],
            name=op.f("fk_flowstore_schedule_ticks_schedule"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_schedule_ticks_run_id"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("schedule", "tick_at", name=op.f("pk_flowstore_schedule_ticks")),
    )
    op.create_index("ix_flowstore_schedule_ticks_run_id", "flowstore_schedule_ticks", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_flowstore_schedule_ticks_run_id", table_name="flowstore_schedule_ticks")
    op.drop_table("flowstore_schedule_ticks")
    op.drop_index("ix_flowstore_schedules_next_at", table_name="flowstore_schedules")
    op.drop_table("flowstore_schedules")
