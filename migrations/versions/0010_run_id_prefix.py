"""Short ids on PostgreSQL: an index of run ids with pattern operators, which LIKE 'prefix%'
reads as a range in any collation (SQLite reads a range of the primary key, and needs none).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_flowstore_runs_id_prefix"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            INDEX, "flowstore_runs", ["id"], postgresql_ops={"id": "varchar_pattern_ops"}
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index(INDEX, table_name="flowstore_runs")
