"""Helpers shared by the repository modules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

__all__ = ["Clock", "Encoder", "upsert"]

Clock = Callable[[], datetime]
"""Returns the current aware UTC time; tests pass a controllable one."""

Encoder = Callable[..., Any]
"""`serde.encode` bound to the store's size limits: `encoder(value, what=...)`."""


def upsert(conn: AsyncConnection, table: Table) -> Any:
    """The dialect's INSERT that supports ON CONFLICT (SQLite and PostgreSQL share the form)."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
