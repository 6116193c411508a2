"""Cancellation requests: runs.cancel_requested_at.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flowstore_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cancel_requested_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("flowstore_runs", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested_at")
