"""Helpers shared by the repository modules."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any

import pydantic_core
from sqlalchemy import Select, Table, Text, bindparam, func, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from flowstore.store.types import UTCDateTime, sqlite_timestamp

__all__ = ["Encoder", "json_rows", "json_rows_select", "upsert", "upsert_for"]

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


def json_rows_select(width: int) -> Select[Any]:
    """SELECT the rows of a JSON array of arrays bound as `:rows` (SQLite's json_each).

    A batch of rows then travels as one bound parameter that SQLite unpacks in C; through
    executemany, SQLAlchemy's per-row parameter handling cost more than SQLite's own work.
    `WHERE 1` keeps an ON CONFLICT clause after the SELECT unambiguous to SQLite's parser.
    """
    source = func.json_each(bindparam("rows", type_=Text)).table_valued("value")
    columns = [func.json_extract(source.c.value, f"$[{index}]") for index in range(width)]
    return select(*columns).select_from(source).where(true())


def json_rows(rows: Sequence[Sequence[Any]], table: Table) -> str:
    """`rows` of `table` as the JSON array of arrays `json_rows_select` reads.

    Each row lists its values in the order of `table.c`. Encoded values are strings already
    and go in as their JSON text; time columns are written in SQLite's stored form.
    """
    times = _times(table)
    ready = []
    for row in rows:
        values = list(row)
        for index in times:
            if values[index] is not None:
                values[index] = sqlite_timestamp(values[index])
        ready.append(values)
    return pydantic_core.to_json(ready).decode()


@cache
def _times(table: Table) -> tuple[int, ...]:
    return tuple(i for i, column in enumerate(table.c) if isinstance(column.type, UTCDateTime))
