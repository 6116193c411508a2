"""Giving the space of deleted rows back to the file system (SQLite).

SQLite keeps the pages freed by a delete in the file, for reuse. A file made with
`auto_vacuum=INCREMENTAL` (every file flowstore creates) gives them back a few at a time
(`reclaim`), each step a short write; any file gives them all back with `vacuum`, which
rewrites the whole file and keeps writers out meanwhile. PostgreSQL's autovacuum makes the
space of deleted rows reusable by itself; neither does anything there.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from flowstore.store.records import SpaceUse

__all__ = ["SpaceUse", "reclaim", "space_use", "vacuum"]

_INCREMENTAL = 2  # PRAGMA auto_vacuum's value for INCREMENTAL


def _pragma(conn: Connection, name: str) -> int:
    # PRAGMAs are not statements SQLAlchemy builds; the names are this module's constants.
    return int(conn.exec_driver_sql(f"PRAGMA {name}").scalar_one())


def space_use(conn: Connection) -> SpaceUse:
    """How big the file is, and how much of it is free."""
    if conn.dialect.name != "sqlite":
        return SpaceUse(0, 0, False)
    size = _pragma(conn, "page_size")
    return SpaceUse(
        _pragma(conn, "page_count") * size,
        _pragma(conn, "freelist_count") * size,
        _pragma(conn, "auto_vacuum") == _INCREMENTAL,
    )


def reclaim(conn: Connection, *, pages: int) -> int:
    """Give up to `pages` free pages back to the file system, in one short write; how many
    were given back (0 on PostgreSQL, or for a file made without incremental auto-vacuum)."""
    if conn.dialect.name != "sqlite" or _pragma(conn, "auto_vacuum") != _INCREMENTAL:
        return 0
    before = _pragma(conn, "freelist_count")
    if before:
        # Each step of the statement frees one page, and the driver's `execute` steps once:
        # `executescript` runs it to its end. It commits the transaction open first (this
        # one, which has written nothing), and the pragma takes the write lock itself.
        conn.connection.driver_connection.executescript(  # type: ignore[union-attr]
            f"PRAGMA incremental_vacuum({int(pages)})"
        )
    return before - _pragma(conn, "freelist_count")


def vacuum(conn: Connection) -> None:
    """Rewrite the whole SQLite file without its free pages, turning incremental
    auto-vacuum on. VACUUM cannot run in a transaction: as in `reclaim`, the one open is
    committed first (it has written nothing). Writers wait until it is done."""
    if conn.dialect.name == "sqlite":
        conn.connection.driver_connection.executescript(  # type: ignore[union-attr]
            "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;"
        )
