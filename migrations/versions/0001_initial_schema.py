"""Initial schema: runs, node executions, the transition log, checkpoints, workers,
cache, memory, error reports, metrics, spans and circuit breakers.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# Types are spelled out here, not imported from flowstore, so this revision stays as it was
# written when the package's types change.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flowstore_breakers",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("failure_count", sa.Integer(), nullable=False),
        sa.Column("success_count", sa.Integer(), nullable=False),
        sa.Column("opened_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "state IN ('closed', 'open', 'half_open')", name=op.f("ck_flowstore_breakers_state")
        ),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_flowstore_breakers")),
    )
    op.create_table(
        "flowstore_cache",
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("value", JSON_VALUE, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_flowstore_cache")),
    )
    with op.batch_alter_table("flowstore_cache", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flowstore_cache_expires_at"), ["expires_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flowstore_cache_workflow_node"), ["workflow", "node"], unique=False
        )

    op.create_table(
        "flowstore_entities",
        sa.Column("namespace", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("attributes", JSON_VALUE, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("namespace", "name", name=op.f("pk_flowstore_entities")),
    )
    op.create_table(
        "flowstore_graphs",
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("spec", JSON_VALUE, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("hash", name=op.f("pk_flowstore_graphs")),
    )
    op.create_table(
        "flowstore_workers",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("metadata", JSON_VALUE, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowstore_workers")),
    )
    with op.batch_alter_table("flowstore_workers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flowstore_workers_heartbeat_at"), ["heartbeat_at"], unique=False
        )

    op.create_table(
        "flowstore_runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("graph_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("inputs", JSON_VALUE, nullable=False),
        sa.Column("output", JSON_VALUE, nullable=True),
        sa.Column("error", JSON_VALUE, nullable=True),
        sa.Column("parent_run_id", sa.String(length=36), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", TIMESTAMP, nullable=True),
        sa.Column("fencing", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_flowstore_runs_status"),
        ),
        sa.ForeignKeyConstraint(
            ["graph_hash"],
            ["flowstore_graphs.hash"],
            name=op.f("fk_flowstore_runs_graph_hash"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["parent_run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_runs_parent_run_id"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowstore_runs")),
    )
    with op.batch_alter_table("flowstore_runs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flowstore_runs_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flowstore_runs_lease_owner"), ["lease_owner"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flowstore_runs_parent_run_id"), ["parent_run_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flowstore_runs_status_priority_created_at"),
            ["status", "priority", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_flowstore_runs_workflow_created_at"),
            ["workflow", "created_at"],
            unique=False,
        )

    op.create_table(
        "flowstore_checkpoints",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("state", JSON_VALUE, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_checkpoints_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_flowstore_checkpoints")),
    )
    op.create_table(
        "flowstore_entity_history",
        sa.Column("namespace", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("attributes", JSON_VALUE, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("changed_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace", "name"],
            ["flowstore_entities.namespace", "flowstore_entities.name"],
            name=op.f("fk_flowstore_entity_history_namespace"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_entity_history_run_id"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint(
            "namespace", "name", "version", name=op.f("pk_flowstore_entity_history")
        ),
    )
    op.create_table(
        "flowstore_error_reports",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("exec_key", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("error_type", sa.String(length=200), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=True),
        sa.Column("details", JSON_VALUE, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_error_reports_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowstore_error_reports")),
    )
    with op.batch_alter_table("flowstore_error_reports", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flowstore_error_reports_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_flowstore_error_reports_run_id"), ["run_id"], unique=False
        )

    op.create_table(
        "flowstore_messages",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("thread_id", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=50), nullable=False),
        sa.Column("content", JSON_VALUE, nullable=False),
        sa.Column("metadata", JSON_VALUE, nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_messages_run_id"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowstore_messages")),
    )
    with op.batch_alter_table("flowstore_messages", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flowstore_messages_thread_id_id"), ["thread_id", "id"], unique=False
        )

    op.create_table(
        "flowstore_metrics",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("workflow", sa.String(length=200), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("labels", JSON_VALUE, nullable=True),
        sa.Column("recorded_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_metrics_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowstore_metrics")),
    )
    with op.batch_alter_table("flowstore_metrics", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flowstore_metrics_recorded_at"), ["recorded_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_flowstore_metrics_run_id"), ["run_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_flowstore_metrics_workflow_node_name"),
            ["workflow", "node", "name"],
            unique=False,
        )

    op.create_table(
        "flowstore_node_executions",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("exec_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("input", JSON_VALUE, nullable=True),
        sa.Column("output", JSON_VALUE, nullable=True),
        sa.Column("error", JSON_VALUE, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("updated_seq", sa.Integer(), nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'running', 'succeeded', 'failed', 'skipped', 'cancelled', "
            "'recovered')",
            name=op.f("ck_flowstore_node_executions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_node_executions_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "node", "exec_key", name=op.f("pk_flowstore_node_executions")
        ),
    )
    op.create_table(
        "flowstore_spans",
        sa.Column("span_id", sa.String(length=32), nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("parent_span_id", sa.String(length=32), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("exec_key", sa.String(length=200), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("attributes", JSON_VALUE, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_spans_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("span_id", name=op.f("pk_flowstore_spans")),
    )
    with op.batch_alter_table("flowstore_spans", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flowstore_spans_run_id"), ["run_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_flowstore_spans_trace_id"), ["trace_id"], unique=False)

    op.create_table(
        "flowstore_transitions",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("node", sa.String(length=200), nullable=True),
        sa.Column("exec_key", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("payload", JSON_VALUE, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "kind IN ('run', 'node', 'event', 'checkpoint')",
            name=op.f("ck_flowstore_transitions_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_transitions_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("run_id", "seq", name=op.f("pk_flowstore_transitions")),
    )


def downgrade() -> None:
    op.drop_table("flowstore_transitions")
    with op.batch_alter_table("flowstore_spans", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowstore_spans_trace_id"))
        batch_op.drop_index(batch_op.f("ix_flowstore_spans_run_id"))

    op.drop_table("flowstore_spans")
    op.drop_table("flowstore_node_executions")
    with op.batch_alter_table("flowstore_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowstore_metrics_workflow_node_name"))
        batch_op.drop_index(batch_op.f("ix_flowstore_metrics_run_id"))
        batch_op.drop_index(batch_op.f("ix_flowstore_metrics_recorded_at"))

    op.drop_table("flowstore_metrics")
    with op.batch_alter_table("flowstore_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowstore_messages_thread_id_id"))

    op.drop_table("flowstore_messages")
    with op.batch_alter_table("flowstore_error_reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowstore_error_reports_run_id"))
        batch_op.drop_index(batch_op.f("ix_flowstore_error_reports_created_at"))

    op.drop_table("flowstore_error_reports")
    op.drop_table("flowstore_entity_history")
    op.drop_table("flowstore_checkpoints")
    with op.batch_alter_table("flowstore_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowstore_runs_workflow_created_at"))
        batch_op.drop_index(batch_op.f("ix_flowstore_runs_status_priority_created_at"))
        batch_op.drop_index(batch_op.f("ix_flowstore_runs_parent_run_id"))
        batch_op.drop_index(batch_op.f("ix_flowstore_runs_lease_owner"))
        batch_op.drop_index(batch_op.f("ix_flowstore_runs_created_at"))

    op.drop_table("flowstore_runs")
    with op.batch_alter_table("flowstore_workers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowstore_workers_heartbeat_at"))

    op.drop_table("flowstore_workers")
    op.drop_table("flowstore_graphs")
    op.drop_table("flowstore_entities")
    with op.batch_alter_table("flowstore_cache", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowstore_cache_workflow_node"))
        batch_op.drop_index(batch_op.f("ix_flowstore_cache_expires_at"))

    op.drop_table("flowstore_cache")
    op.drop_table("flowstore_breakers")
