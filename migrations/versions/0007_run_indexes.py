"""Indexes for many runs: the claim order of each status; runs newest first to the id, by
status, by workflow or all (listings); by status and end (retention); and the run columns
of messages and entity history (deleting a run sets them to NULL).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_flowstore_runs_status_priority_created_at", table_name="flowstore_runs")
    op.create_index(
        "ix_flowstore_runs_claim",
        "flowstore_runs",
        ["status", sa.text("priority DESC"), "created_at", "id"],
    )
    op.create_index(
        "ix_flowstore_runs_status_created_at_id", "flowstore_runs", ["status", "created_at", "id"]
    )
    for columns in (["workflow", "created_at"], ["created_at"]):
        op.drop_index(f"ix_flowstore_runs_{'_'.join(columns)}", table_name="flowstore_runs")
        op.create_index(
            f"ix_flowstore_runs_{'_'.join(columns)}_id", "flowstore_runs", [*columns, "id"]
        )
    op.create_index(
        "ix_flowstore_runs_status_finished_at", "flowstore_runs", ["status", "finished_at"]
    )
    op.create_index("ix_flowstore_messages_run_id", "flowstore_messages", ["run_id"])
    op.create_index("ix_flowstore_entity_history_run_id", "flowstore_entity_history", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_flowstore_entity_history_run_id", table_name="flowstore_entity_history")
    op.drop_index("ix_flowstore_messages_run_id", table_name="flowstore_messages")
    op.drop_index("ix_flowstore_runs_status_finished_at", table_name="flowstore_runs")
    for columns in (["workflow", "created_at"], ["created_at"]):
        op.drop_index(f"ix_flowstore_runs_{'_'.join(columns)}_id", table_name="flowstore_runs")
        op.create_index(f"ix_flowstore_runs_{'_'.join(columns)}", "flowstore_runs", columns)
    op.drop_index("ix_flowstore_runs_status_created_at_id", table_name="flowstore_runs")
    op.drop_index("ix_flowstore_runs_claim", table_name="flowstore_runs")
    op.create_index(
        "ix_flowstore_runs_status_priority_created_at",
        "flowstore_runs",
        ["status", "priority", "created_at"],
    )
