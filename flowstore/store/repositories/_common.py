"""Helpers shared by the repository modules."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from flowstore.store.types import UTCDateTime, sqlite_timestamp

__all__ = ["Encoder", "driver_rows", "upsert", "upsert_for"]

Encoder = Callable[..., Any]
"""`serde.encode` bound to the store's size limits: `encoder(value, what=...)`."""


def upsert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT that supports ON CONFLICT (SQLite and PostgreSQL share the form)."""
    return upsert_for(conn.dialect.name, table)


def upsert_for(dialect: str, table: Table) -> Any:
    """`upsert` by dialect name, for statements built once and reused."""
    if dialect == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def driver_rows(rows: list[list[Any]], table: Table) -> list[list[Any]]:
    """`rows` of `table` (values in the order of `table.c`) in SQLite's driver form, for
    `prepared.execute_values`: their times become SQLite's stored text, in place. Their
    JSON values are encoded already (`Encoded` is a `str`)."""
    times = _times(table)
    for row in rows:
        for index in times:
            if row[index] is not None:
                row[index] = sqlite_timestamp(row[index])
    return rows


@cache
def _times(table: Table) -> tuple[int, ...]:
    return tuple(i for i, column in enumerate(table.c) if isinstance(column.type, UTCDateTime))
