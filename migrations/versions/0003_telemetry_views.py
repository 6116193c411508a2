"""Telemetry: node_executions.duration_ms and span_id, and the views flowstore_node_stats,
flowstore_run_stats, flowstore_error_stats and flowstore_trace.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

The views are defined once, as SQLAlchemy constructs, in `flowstore.store.views`. A later
change to a view comes with a migration that drops and creates it again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import DropView

from flowstore.store.views import TELEMETRY_VIEWS as VIEWS

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flowstore_node_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duration_ms", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("span_id", sa.String(length=32), nullable=True))
    for view in VIEWS:
        op.execute(view)


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(DropView(view.table, if_exists=True))
    with op.batch_alter_table("flowstore_node_executions", schema=None) as batch_op:
        batch_op.drop_column("span_id")
        batch_op.drop_column("duration_ms")
