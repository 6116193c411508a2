"""Waits in SQL: the view flowstore_wait_stats (time waited per workflow, node and signal).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy.schema import DropView

from flowstore.store.views import wait_stats

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(wait_stats)


def downgrade() -> None:
    op.execute(DropView(wait_stats.table, if_exists=True))
