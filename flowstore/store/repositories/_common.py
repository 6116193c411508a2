"""Helpers shared by the repository modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

__all__ = ["Clock", "Encoder", "upsert", "upsert_for"]

Clock = Callable[[], datetime]
"""Returns the current aware UTC time; tests pass a controllable one."""

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
