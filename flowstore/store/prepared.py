"""Hot-path statements on SQLite: compiled by SQLAlchemy once, run on the driver's cursor.

A run's write path sends the same three statements in every transaction. Through
`Connection.execute`, SQLAlchemy spends about 50 us per statement on this machine setting up
its execution context and result, far more than SQLite spends running it. Here a statement is
still a SQLAlchemy construct: it is compiled once for the dialect, parameters are bound
positionally through the same type processors SQLAlchemy would apply, and driver errors are
wrapped in SQLAlchemy's exception classes, so `translate_errors` maps them as before.

Only the SQLite writer uses this. PostgreSQL and every other statement go through
`Connection.execute`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Executable, exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["execute", "execute_many", "fast_path"]

_Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class _Slot:
    """One positional parameter: its bind name, type processor, and a value fixed in the SQL."""

    name: str
    process: _Processor
    fixed: bool
    value: Any


@dataclass(frozen=True, slots=True)
class _Prepared:
    sql: str
    slots: tuple[_Slot, ...]

    def bind(self, parameters: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for slot in self.slots:
            if slot.fixed:
                values.append(slot.value)
                continue
            value = parameters[slot.name]
            values.append(value if slot.process is None else slot.process(value))
        return tuple(values)


def fast_path(conn: Connection) -> bool:
    """True when `conn` is a pysqlite connection this module can drive directly."""
    return conn.dialect.name == "sqlite" and conn.dialect.driver == "pysqlite"


def execute(
    conn: Connection, statement: Executable, parameters: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run `statement` once; return its rows (RETURNING), unprocessed."""
    prepared = _prepare(statement, conn.dialect)
    values = prepared.bind(parameters)
    cursor = _cursor(conn)
    try:
        cursor.execute(prepared.sql, values)
        return cursor.fetchall()
    except sqlite3.Error as error:
        raise _wrapped(prepared.sql, values, error) from error
    finally:
        cursor.close()


def execute_many(
    conn: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run `statement` once per parameter row."""
    prepared = _prepare(statement, conn.dialect)
    values = [prepared.bind(row) for row in rows]
    cursor = _cursor(conn)
    try:
        cursor.executemany(prepared.sql, values)
    except sqlite3.Error as error:
        raise _wrapped(prepared.sql, values, error) from error
    finally:
        cursor.close()


def _cursor(conn: Connection) -> sqlite3.Cursor:
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver.cursor()


def _wrapped(sql: str, values: Any, error: sqlite3.Error) -> exc.StatementError:
    return exc.DBAPIError.instance(sql, values, error, sqlite3.Error)


@lru_cache(maxsize=64)
def _prepare(statement: Executable, dialect: Dialect) -> _Prepared:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    if compiled.positiontup is None:
        raise TypeError(f"dialect {dialect.name!r} does not bind parameters by position")
    slots = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        # A literal written into the construct (`status == "succeeded"`) is fixed here.
        fixed = not bind.required
        value = bind.effective_value if fixed else None
        if fixed and process is not None:
            value = process(value)
        slots.append(_Slot(name, process, fixed, value))
    return _Prepared(compiled.string, tuple(slots))
