"""Circuit-breaker state, shared by every worker through compare-and-set on a version."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from flowstore.store.records import BreakerState
from flowstore.store.repositories._common import upsert
from flowstore.store.schema import breakers

__all__ = ["get_breaker", "save_breaker"]


def get_breaker(conn: Connection, name: str) -> BreakerState | None:
    """The breaker's state, or None when it was never saved (closed)."""
    row = (conn.execute(select(breakers).where(breakers.c.name == name))).mappings().first()
    return None if row is None else BreakerState.from_row(row)


def save_breaker(
    conn: Connection,
    name: str,
    *,
    state: str,
    failure_count: int,
    success_count: int,
    opened_at: datetime | None,
    expected_version: int,
    now: datetime,
) -> BreakerState | None:
    """Save the breaker if its version is still `expected_version` (0: not saved yet).

    Returns the saved state, or None when another worker saved it first; the caller reads it
    again and decides anew.
    """
    saved = BreakerState(
        name=name,
        state=state,
        failure_count=failure_count,
        success_count=success_count,
        opened_at=opened_at,
        updated_at=now,
        version=expected_version + 1,
    )
    values = {
        "state": state,
        "failure_count": failure_count,
        "success_count": success_count,
        "opened_at": opened_at,
        "updated_at": now,
        "version": saved.version,
    }
    if expected_version == 0:
        stmt = upsert(conn, breakers).values(name=name, **values)
        result = conn.execute(stmt.on_conflict_do_nothing(index_elements=[breakers.c.name]))
    else:
        result = conn.execute(
            update(breakers)
            .where(breakers.c.name == name, breakers.c.version == expected_version)
            .values(values)
        )
    if result.rowcount != 1:
        return None
    return saved
