"""Hot-path statements on SQLite: compiled by SQLAlchemy once, run on the driver's cursor.

A run's write path sends the same three statements in every transaction. Through
`Connection.execute`, SQLAlchemy spends about 50 us per statement on this machine setting up
its execution context and result, far more than SQLite spends running it. Here a statement is
still a SQLAlchemy construct: it is compiled once for the dialect, parameters are bound
positionally through the same type processors SQLAlchemy would apply, and driver errors are
wrapped in SQLAlchemy's exception classes, so `translate_errors` maps them as before.

On any other connection (PostgreSQL, aiosqlite) the same functions hand the statement to
`Connection.execute`, so a repository calls them without asking which backend it is on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Executable, Select, exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import SQLCompiler

__all__ = ["execute", "execute_many", "execute_values", "fast_path", "select_rows"]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A compiled statement and how to turn a parameter mapping into its positional values."""

    sql: str
    values_of: Callable[[Mapping[str, Any]], list[Any]]  # the caller's values, in order
    fixed: tuple[tuple[int, Any], ...]  # (position, value) of literals written into the construct
    # (position, type processor, whether None goes through it; else None binds NULL)
    processors: tuple[tuple[int, Callable[[Any], Any], bool], ...]

    width: int  # how many values the caller gives

    def bind(self, parameters: Mapping[str, Any]) -> list[Any]:
        values = self.values_of(parameters)
        for position, value in self.fixed:  # in order of position
            values.insert(position, value)
        for position, process, with_none in self.processors:
            if with_none or values[position] is not None:
                values[position] = process(values[position])
        return values

    def with_fixed(self, row: Sequence[Any]) -> list[Any]:
        """A row of the caller's values, with the construct's literals in their places."""
        values = list(row)
        for position, value in self.fixed:
            values.insert(position, value)
        return values


def fast_path(conn: Connection) -> bool:
    """True when `conn` is a pysqlite connection this module can drive directly."""
    return conn.dialect.name == "sqlite" and conn.dialect.driver == "pysqlite"


def execute(
    conn: Connection, statement: Executable, parameters: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run `statement` once; return its rows (RETURNING), unprocessed on SQLite."""
    if not fast_path(conn):
        return [tuple(row) for row in conn.execute(statement, parameters)]
    prepared = _prepare(statement, conn.dialect)
    values = prepared.bind(parameters)
    try:
        return _driver(conn).execute(prepared.sql, values).fetchall()
    except sqlite3.Error as error:
        raise _wrapped(prepared.sql, values, error) from error


def select_rows(
    conn: Connection, statement: Select[Any], parameters: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Run a SELECT once; return its rows with each column's type processing applied
    (JSON decoded, times as aware datetimes), as SQLAlchemy would."""
    if not fast_path(conn):
        return [tuple(row) for row in conn.execute(statement, parameters)]
    rows = execute(conn, statement, parameters)
    processors = _result_processors(statement, conn.dialect)
    if not any(processors):
        return rows
    return [
        tuple(
            value if process is None else process(value)
            for process, value in zip(processors, row, strict=True)
        )
        for row in rows
    ]


@lru_cache(maxsize=64)
def _result_processors(
    statement: Select[Any], dialect: Dialect
) -> tuple[Callable[[Any], Any] | None, ...]:
    return tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.selected_columns
    )


def execute_many(
    conn: Connection, statement: Executable, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run `statement` once per parameter row."""
    if not rows:
        return
    if not fast_path(conn):
        conn.execute(statement, list(rows))
        return
    prepared = _prepare(statement, conn.dialect)
    values = [prepared.bind(row) for row in rows]
    try:
        _driver(conn).executemany(prepared.sql, values)
    except sqlite3.Error as error:
        raise _wrapped(prepared.sql, values, error) from error


def execute_values(conn: Connection, statement: Executable, rows: Sequence[Sequence[Any]]) -> None:
    """Run `statement` once per row of values already in the driver's form, each listing
    the statement's parameters in order: no type processing, so times are SQLite's text
    and JSON values encoded already. SQLite only (`fast_path`): a batch of hundreds of
    rows costs little more than SQLite's own work."""
    if not rows:
        return
    prepared = _prepare(statement, conn.dialect)
    if len(rows[0]) != prepared.width:
        raise ValueError(f"{prepared.width} values per row expected, not {len(rows[0])}")
    if prepared.fixed:
        rows = [prepared.with_fixed(row) for row in rows]
    try:
        _driver(conn).executemany(prepared.sql, rows)
    except sqlite3.Error as error:
        raise _wrapped(prepared.sql, rows, error) from error


def _driver(conn: Connection) -> sqlite3.Connection:
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _wrapped(sql: str, values: Any, error: sqlite3.Error) -> exc.StatementError:
    return exc.DBAPIError.instance(sql, values, error, sqlite3.Error)


@lru_cache(maxsize=64)
def _prepare(statement: Executable, dialect: Dialect) -> _Prepared:
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    assert isinstance(compiled, SQLCompiler)
    if compiled.positiontup is None:
        raise TypeError(f"dialect {dialect.name!r} does not bind parameters by position")
    fixed, processors, required = [], [], []
    for position, name in enumerate(compiled.positiontup):
        bind = compiled.binds[name]
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if not bind.required:  # a literal written into the construct (`status == "succeeded"`)
            value = bind.effective_value
            fixed.append((position, value if process is None or value is None else process(value)))
            continue
        required.append(name)
        if process is not None:
            processors.append((position, process, process(None) is not None))
    return _Prepared(
        compiled.string, _values_of(required), tuple(fixed), tuple(processors), len(required)
    )


def _values_of(names: list[str]) -> Callable[[Mapping[str, Any]], list[Any]]:
    """A function that lists a mapping's values of `names` in order (a missing one raises)."""
    if not names:
        return lambda _: []
    if len(names) == 1:
        return lambda parameters: [parameters[names[0]]]
    get = itemgetter(*names)
    return lambda parameters: list(get(parameters))
