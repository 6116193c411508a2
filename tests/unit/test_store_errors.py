"""Driver errors become flowstore errors: faults that pass are `StoreUnavailable`, so workers
and heartbeats retry them; broken queries and bad settings are plain errors that say why."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy import exc

from flowstore.errors import StoreError, StoreUnavailable
from flowstore.store import StoreSettings
from flowstore.store.engine import store_error


class _PostgresError(Exception):
    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("sqlstate", "message"),
    [
        ("57P03", "the database system is starting up"),
        ("57P01", "terminating connection due to administrator command"),
        ("08006", "connection failure"),
        ("40001", "could not serialize access"),
    ],
)
def test_postgresql_faults_that_pass_are_unavailable(sqlstate: str, message: str) -> None:
    error = exc.DBAPIError("SELECT 1", {}, _PostgresError(sqlstate, message))
    translated = store_error("recording a heartbeat", error)
    assert type(translated) is StoreUnavailable
    assert str(translated) == f"recording a heartbeat: {message}"


def test_a_broken_postgresql_query_is_a_store_error() -> None:
    error = exc.ProgrammingError("SELECT", {}, _PostgresError("42601", "syntax error"))
    assert type(store_error("listing runs", error)) is StoreError


def test_sqlite_locked_from_the_driver_itself_is_unavailable() -> None:
    with sqlite3.connect(":memory:") as conn, pytest.raises(sqlite3.OperationalError) as broken:
        conn.execute("PRAGMA no_such_thing = (")
    assert type(store_error("x", broken.value)) is StoreError
    locked = sqlite3.OperationalError("database is locked")
    locked.sqlite_errorcode = 5  # type: ignore[attr-defined]
    translated = store_error("beginning a write", locked)
    assert type(translated) is StoreUnavailable
    assert "database is locked" in str(translated)
    wrapped = exc.OperationalError("BEGIN IMMEDIATE", {}, locked)
    assert type(store_error("beginning a write", wrapped)) is StoreUnavailable


def test_a_mistyped_synchronous_level_is_refused() -> None:
    with pytest.raises(StoreError, match=r"sqlite_synchronous='FUL'.*OFF, NORMAL, FULL, EXTRA"):
        StoreSettings(sqlite_synchronous="FUL")  # type: ignore[arg-type]
    assert StoreSettings(sqlite_synchronous="NORMAL").sqlite_synchronous == "NORMAL"
