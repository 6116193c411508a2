"""Waiting runs: the `waiting` status of runs and node executions, runs.wake_at, and the
flowstore_waits and flowstore_signals tables.

On SQLite, changing a CHECK constraint rebuilds the table (Alembic's batch mode): the store
runs migrations with foreign-key enforcement off, so that dropping the old `flowstore_runs`
does not cascade to the rows that refer to it, and checks every foreign key before it commits.
The views over the rebuilt tables are dropped first and made again after.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import DropView

from flowstore.store.views import TELEMETRY_VIEWS as VIEWS

# Spelled out here, as in 0001, so this revision stays as it was written.
TIMESTAMP = sa.DateTime(timezone=True)
JSON_VALUE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
_NODE_STATUSES = (
    "scheduled",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "recovered",
)


def _one_of(column: str, values: Sequence[str]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def _status_check(table: str, statuses: Sequence[str], *, new: bool) -> None:
    with op.batch_alter_table(table, schema=None, recreate="auto") as batch_op:
        batch_op.drop_constraint(op.f(f"ck_{table}_status"), type_="check")
        batch_op.create_check_constraint(op.f(f"ck_{table}_status"), _one_of("status", statuses))
        if table == "flowstore_runs" and new:
            batch_op.add_column(sa.Column("wake_at", TIMESTAMP, nullable=True))
            batch_op.create_index(
                batch_op.f("ix_flowstore_runs_status_wake_at"), ["status", "wake_at"], unique=False
            )
        elif table == "flowstore_runs":
            batch_op.drop_index(batch_op.f("ix_flowstore_runs_status_wake_at"))
            batch_op.drop_column("wake_at")


def _without_views() -> None:
    for view in reversed(VIEWS):
        op.execute(DropView(view.table, if_exists=True))


def _with_views() -> None:
    for view in VIEWS:
        op.execute(view)


def upgrade() -> None:
    _without_views()
    _status_check("flowstore_runs", (*_RUN_STATUSES[:2], "waiting", *_RUN_STATUSES[2:]), new=True)
    _status_check(
        "flowstore_node_executions",
        (*_NODE_STATUSES[:2], "waiting", *_NODE_STATUSES[2:]),
        new=True,
    )
    _with_views()
    op.create_table(
        "flowstore_waits",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("node", sa.String(length=200), nullable=False),
        sa.Column("exec_key", sa.String(length=200), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("wake_at", TIMESTAMP, nullable=True),
        sa.Column("ended_at", TIMESTAMP, nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("signal_id", SERIAL, nullable=True),
        sa.CheckConstraint(
            _one_of("kind", ("sleep", "signal")), name=op.f("ck_flowstore_waits_kind")
        ),
        sa.CheckConstraint(
            "outcome IS NULL OR " + _one_of("outcome", ("woke", "signalled", "timed_out")),
            name=op.f("ck_flowstore_waits_outcome"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_waits_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "run_id", "node", "exec_key", "seq", name=op.f("pk_flowstore_waits")
        ),
    )
    op.create_table(
        "flowstore_signals",
        sa.Column("id", SERIAL, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("payload", JSON_VALUE, nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("consumed_at", TIMESTAMP, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["flowstore_runs.id"],
            name=op.f("fk_flowstore_signals_run_id"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flowstore_signals")),
        sa.UniqueConstraint(
            "run_id", "idempotency_key", name=op.f("uq_flowstore_signals_run_id_idempotency_key")
        ),
    )
    with op.batch_alter_table("flowstore_signals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_flowstore_signals_run_id_name_consumed_at"),
            ["run_id", "name", "consumed_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("flowstore_signals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flowstore_signals_run_id_name_consumed_at"))
    op.drop_table("flowstore_signals")
    op.drop_table("flowstore_waits")
    _without_views()
    _status_check("flowstore_node_executions", _NODE_STATUSES, new=False)
    _status_check("flowstore_runs", _RUN_STATUSES, new=False)
    _with_views()
