"""Queues: the flowstore_queues table of limits, the queue and queue key of each run, the
claim index of the runs in no queue and that of each queue's, and the starts of each queue's
runs (its rate limit).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import DropView

from flowstore.store.views import RUN_VIEWS as VIEWS

# Spelled out here, as in 0001, so this revision stays as it was written.
TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flowstore_queues",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=True),
        sa.Column("per_key", sa.Integer(), nullable=True),
        sa.Column("rate_limit", sa.Integer(), nullable=True),
        sa.Column("rate_period", sa.Float(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "concurrency IS NULL OR concurrency >= 1",
            name=op.f("ck_flowstore_queues_concurrency"),
        ),
        sa.CheckConstraint(
            "per_key IS NULL OR per_key >= 1", name=op.f("ck_flowstore_queues_per_key")
        ),
        sa.CheckConstraint(
            "(rate_limit IS NULL AND rate_period IS NULL) OR (rate_limit >= 1 AND rate_period > 0)",
            name=op.f("ck_flowstore_queues_rate"),
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_flowstore_queues")),
    )
    op.add_column("flowstore_runs", sa.Column("queue", sa.String(length=200), nullable=True))
    op.add_column("flowstore_runs", sa.Column("queue_key", sa.String(length=200), nullable=True))
    op.drop_index("ix_flowstore_runs_claim", table_name="flowstore_runs")
    op.create_index(
        "ix_flowstore_runs_claim",
        "flowstore_runs",
        ["status", sa.text("priority DESC"), "created_at", "id"],
        sqlite_where=sa.text("queue IS NULL"),
        postgresql_where=sa.text("queue IS NULL"),
    )
    op.create_index(
        "ix_flowstore_runs_queue_claim",
        "flowstore_runs",
        ["queue", "status", sa.text("priority DESC"), "created_at", "id", "queue_key"],
        sqlite_where=sa.text("queue IS NOT NULL"),
        postgresql_where=sa.text("queue IS NOT NULL"),
    )
    op.create_index("ix_flowstore_runs_queue_started_at", "flowstore_runs", ["queue", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_flowstore_runs_queue_started_at", table_name="flowstore_runs")
    op.drop_index("ix_flowstore_runs_queue_claim", table_name="flowstore_runs")
    op.drop_index("ix_flowstore_runs_claim", table_name="flowstore_runs")
    op.create_index(
        "ix_flowstore_runs_claim",
        "flowstore_runs",
        ["status", sa.text("priority DESC"), "created_at", "id"],
    )
    for view in reversed(VIEWS):  # SQLite rebuilds the table to drop its columns
        op.execute(DropView(view.table, if_exists=True))
    with op.batch_alter_table("flowstore_runs", schema=None, recreate="auto") as batch_op:
        batch_op.drop_column("queue_key")
        batch_op.drop_column("queue")
    for view in VIEWS:
        op.execute(view)
    op.drop_table("flowstore_queues")
