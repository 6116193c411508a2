"""Model calls in SQL: the flowstore_llm_calls table (one row per call of an `llm` node, with
its tokens, cost and latency) and the view flowstore_llm_usage that sums it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.schema import DropView

from flowstore.store.views import llm_usage

# Spelled out here, as in 0001, so this revision stays as it was written.
TIMESTAMP = sa.DateTime(timezone=True)
NAME = sa.String(length=200)
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flowstore_llm_calls",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("workflow", NAME, nullable=False),
        sa.Column("node", NAME, nullable=False),
        sa.Column("exec_key", NAME, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("endpoint", sa.String(length=500), nullable=False),
        sa.Column("model", NAME, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=True),
        sa.Column("completion_tokens", sa.Integer(), nullable=True),
        sa.Column("total_tokens", sa.Integer(), nullable=True),
        sa.Column("cost", sa.Float(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("first_token_ms", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "outcome IN ('ok', 'cached', 'failed')", name=op.f("ck_flowstore_llm_calls_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_llm_calls_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowstore_llm_calls")),
        sa.UniqueConstraint("run_id", "seq", name=op.f("uq_flowstore_llm_calls_run_id_seq")),
    )
    op.create_index(
        "ix_flowstore_llm_calls_workflow_node_model",
        "flowstore_llm_calls",
        ["workflow", "node", "model"],
    )
    op.create_index("ix_flowstore_llm_calls_created_at", "flowstore_llm_calls", ["created_at"])
    op.execute(llm_usage)


def downgrade() -> None:
    op.execute(DropView(llm_usage.table, if_exists=True))
    op.drop_index("ix_flowstore_llm_calls_created_at", table_name="flowstore_llm_calls")
    op.drop_index("ix_flowstore_llm_calls_workflow_node_model", table_name="flowstore_llm_calls")
    op.drop_table("flowstore_llm_calls")
