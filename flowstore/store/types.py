"""Column types that behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.sqlite import DATETIME as SQLITE_DATETIME
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = ["JSONValue", "UTCDateTime", "sqlite_timestamp"]


class _SQLiteText(SQLITE_DATETIME):
    """SQLite's DATETIME, bound from the text `UTCDateTime` has already written."""

    def bind_processor(self, dialect: Dialect) -> None:
        return None


# SQLAlchemy's own storage format for SQLite DATETIME, so its result processor reads it back.
_SQLITE_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
_last_timestamp: tuple[datetime | None, str] = (None, "")


def sqlite_timestamp(value: datetime) -> str:
    """The text SQLite stores for an aware datetime: naive UTC, microseconds, sortable.

    Every row of a write batch carries the same time, so the last text is kept and reused.
    """
    global _last_timestamp
    last, text = _last_timestamp
    if value is not last:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: flowstore stores aware UTC times")
        text = value.astimezone(UTC).strftime(_SQLITE_FORMAT)
        _last_timestamp = (value, text)
    return text


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime: `timestamptz` on PostgreSQL, naive UTC text on SQLite.

    SQLite's text form sorts in time order, so lease expiry and time filters compare correctly.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SQLiteText())  # type: ignore[no-untyped-call]
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return sqlite_timestamp(value)
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: flowstore stores aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json_type() -> TypeEngine[Any]:
    # SQL NULL means "no value yet"; a stored JSON null arrives already encoded (serde.Encoded).
    return JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


JSONValue: TypeEngine[Any] = _json_type()
"""JSON on SQLite (queried with `json_extract`), JSONB on PostgreSQL (queried with `->>`)."""
