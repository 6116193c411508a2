"""Engine setup per backend and the translation of driver errors.

SQLite gets one connect hook (WAL, busy timeout, foreign keys, synchronous level) and a begin
hook that issues `BEGIN IMMEDIATE` for write transactions, so a read-modify-write takes SQLite's
write lock before it reads and concurrent writers queue instead of losing updates. PostgreSQL
goes through asyncpg, from a pool whose connections are pinged only after lying idle
(`install_idle_ping`).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, get_args

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from flowstore.errors import IntegrityConflict, StoreError, StoreUnavailable
from flowstore.store import serde

__all__ = [
    "DEFAULT_URL",
    "sqlite_path",
    "TRANSLATED",
    "WRITE_OPTION",
    "StoreSettings",
    "begin_transaction",
    "create_engine",
    "install_idle_ping",
    "install_sqlite_hooks",
    "normalize_url",
    "store_error",
    "translate_errors",
]

DEFAULT_URL: Final = "sqlite+aiosqlite:///flowstore.db"


def database_url(given: str | None = None) -> str:
    """The URL given, else `FLOWSTORE_DATABASE_URL`, else the embedded SQLite default."""
    return given or os.environ.get("FLOWSTORE_DATABASE_URL") or DEFAULT_URL


WRITE_OPTION: Final = "flowstore_write"
"""Execution option that marks a connection's transactions as writes (`BEGIN IMMEDIATE`)."""

Synchronous = Literal["OFF", "NORMAL", "FULL", "EXTRA"]


@dataclass(frozen=True, slots=True)
class StoreSettings:
    """How to open a store.

    Attributes:
        url: The database URL: `sqlite+aiosqlite:///path.db` or
            `postgresql+asyncpg://user@host/db` (`sqlite://` and `postgresql://` are accepted
            and given the async driver).
        sqlite_synchronous: SQLite's `synchronous` level; FULL makes every commit durable
            across power loss, NORMAL across process crashes only.
        busy_timeout_ms: How long a SQLite writer waits for another process's write lock.
        value_limits: Size limits for one stored value.
        auto_upgrade: Apply pending migrations when the store opens. `None` means yes for
            SQLite (an embedded database belongs to the application) and no for PostgreSQL
            (a shared database is upgraded deliberately, with `flowstore db upgrade`).
        pool_size: Connections kept open per process (PostgreSQL): one listens for notices
            once anything waits for them; the others carry transactions, which wait for a
            connection when all are busy.
        idle_in_transaction_s: How long the server lets one of flowstore's connections sit
            idle inside a transaction before it ends the session (PostgreSQL's
            `idle_in_transaction_session_timeout`): a process frozen mid-transaction (stopped,
            swapped out, partitioned away) cannot hold a run's row locks longer than this.
            flowstore's own transactions never idle; 0 turns the limit off.
        max_overflow: Extra connections opened under load and closed as soon as they are
            returned (PostgreSQL); 0 by default: under a steady load of many runs,
            opening and closing connections (and preparing their statements again) cost
            more than waiting for a pooled one.
        echo: Log every SQL statement.
        create: Create a SQLite database file that does not exist yet; with False (commands
            that only read), a missing file is an error instead.
        read_only: Only read (the commands that inspect runs): no migration, no warm-up, and a
            SQLite file this process may not write is opened read-only.
    """

    url: str = DEFAULT_URL
    sqlite_synchronous: Synchronous = "FULL"
    busy_timeout_ms: int = 10_000
    value_limits: serde.ValueLimits = field(default_factory=serde.ValueLimits)
    auto_upgrade: bool | None = None
    pool_size: int = 5
    idle_in_transaction_s: float = 60.0
    max_overflow: int = 0
    echo: bool = False
    create: bool = True
    read_only: bool = False

    def __post_init__(self) -> None:
        # SQLite takes an unknown level as NORMAL without a word: a typo would weaken
        # durability silently.
        if self.sqlite_synchronous not in get_args(Synchronous):
            choices = ", ".join(get_args(Synchronous))
            raise StoreError(
                f"sqlite_synchronous={self.sqlite_synchronous!r} is not a SQLite synchronous "
                f"level: use one of {choices}"
            )
        if self.idle_in_transaction_s < 0:
            raise StoreError(
                f"idle_in_transaction_s={self.idle_in_transaction_s!r} must be 0 or more"
            )
        if self.busy_timeout_ms < 0:
            raise StoreError(f"busy_timeout_ms={self.busy_timeout_ms!r} must be 0 or more")
        if self.pool_size < 1 or self.max_overflow < 0:
            raise StoreError(
                f"pool_size={self.pool_size!r}, max_overflow={self.max_overflow!r}: the pool "
                "needs at least one connection, and no fewer than 0 extra ones"
            )
        if self.pool_size + self.max_overflow < 2:
            raise StoreError(
                f"pool_size={self.pool_size!r} with max_overflow={self.max_overflow!r} leaves "
                "PostgreSQL no connection for transactions while one listens for notices: "
                "give pool_size 2 or more"
            )


def normalize_url(url: str | URL) -> URL:
    """Give a SQLite or PostgreSQL URL its async driver, and refuse other backends."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise StoreError(
            f"{url!r} is not a database URL: give sqlite:///path/to/file.db or "
            "postgresql://user@host/database"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StoreError(
                f"{parsed.render_as_string(hide_password=True)}: an in-memory SQLite database "
                "is private to one connection; give a file path (sqlite+aiosqlite:///runs.db)"
            )
        return parsed.set(drivername="sqlite+aiosqlite")
    if backend == "postgresql":
        if importlib.util.find_spec("asyncpg") is None:
            raise StoreError(
                "PostgreSQL needs the asyncpg driver: pip install 'flowstore[postgres]'"
            )
        return parsed.set(drivername="postgresql+asyncpg")
    raise StoreError(
        f"unsupported database {parsed.render_as_string(hide_password=True)!r}: flowstore "
        "stores runs in SQLite (sqlite+aiosqlite:///file.db) or PostgreSQL "
        "(postgresql+asyncpg://user@host/db)"
    )


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a SQLite URL (None for another backend)."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).absolute()


def create_engine(settings: StoreSettings) -> AsyncEngine:
    """Create the async engine for `settings.url`, with the backend's connection setup; a
    missing SQLite file is an error unless `settings.create`."""
    url = normalize_url(settings.url)
    sqlite_file = sqlite_path(url)
    if sqlite_file is not None and not settings.create and not sqlite_file.exists():
        raise StoreError(
            f"no database at {sqlite_file}: check the path (or --url), or create it with "
            "`flowstore db upgrade`"
        )
    options: dict[str, Any] = {
        "json_serializer": serde.serialize_for_driver,
        "json_deserializer": serde.decode,
        "echo": settings.echo,
    }
    if url.get_backend_name() == "postgresql":
        idle_ms = int(settings.idle_in_transaction_s * 1000)
        options.update(
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            connect_args={"server_settings": {"idle_in_transaction_session_timeout": str(idle_ms)}},
        )
    if sqlite_file is not None and settings.read_only:
        url = _read_only_url(url, sqlite_file)
    engine = create_async_engine(url, **options)
    if url.get_backend_name() == "sqlite":
        install_sqlite_hooks(engine.sync_engine, settings)
    else:
        install_idle_ping(engine.sync_engine)
    return engine


_PING_AFTER_IDLE_S: Final = 1.0
"""How long a pooled PostgreSQL connection may lie unused before it is pinged on checkout."""

_RETURNED_AT: Final = "flowstore_returned_at"


def install_idle_ping(engine: Engine) -> None:
    """Ping a pooled connection on checkout only when it has lain idle for over a second,
    and replace it when the ping fails.

    SQLAlchemy's `pool_pre_ping` pings at every checkout: a round trip before every
    transaction, a third of a run's commit here. A connection returned less than a second
    ago was working then; one idle longer may have been closed by a restarted server, a
    proxy or a timeout, so it is checked as `pool_pre_ping` would. A connection that breaks
    while in use fails that transaction (a `StoreUnavailable` its caller handles), and the
    pool replaces it and every connection older than the failure.
    """

    @event.listens_for(engine, "checkin")
    def returned(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_RETURNED_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def taken(dbapi_connection: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is None or time.monotonic() - returned_at < _PING_AFTER_IDLE_S:
            return  # new, or in use a moment ago
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise exc.DisconnectionError(f"a pooled connection is gone: {error}") from error
        if not alive:
            raise exc.DisconnectionError("a pooled connection did not answer a ping")


def _read_only_url(url: URL, file: Path) -> URL:
    """The URL that reads `file` when this process may not write it (or its folder, where
    SQLite keeps the WAL's shared-memory file): read-only while another process has the
    database open (its `-shm` file exists, so WAL reads work), else as an immutable file
    (nobody has it open, so nobody is changing it)."""
    if os.access(file, os.W_OK) and os.access(file.parent, os.W_OK):
        return url
    mode = {"mode": "ro"} if Path(f"{file}-shm").exists() else {"immutable": "1"}
    return url.set(database=f"file:{file}", query={**mode, "uri": "true"})


def install_sqlite_hooks(engine: Engine, settings: StoreSettings, *, begin: bool = True) -> None:
    """Set up every connection of a SQLite engine, and begin writes with BEGIN IMMEDIATE.

    With `begin=False` the caller issues BEGIN itself (`begin_transaction`): an engine with no
    connection events skips SQLAlchemy's event dispatch on every statement.
    """
    pragmas = (
        # Setting the journal mode writes the file: a reader leaves it as the writers set it.
        *(() if settings.read_only else ("PRAGMA journal_mode=WAL",)),
        f"PRAGMA busy_timeout={int(settings.busy_timeout_ms)}",
        "PRAGMA foreign_keys=ON",
        f"PRAGMA synchronous={settings.sqlite_synchronous}",
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control from the sqlite3 module, so the begin hook decides the mode.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA page_count")
            if not settings.read_only and not cursor.fetchone()[0]:
                # A new file, before its first table: it gives pages freed by deletes back to
                # the file system a few at a time (`space.reclaim`). (On a file with tables
                # the setting waits for a VACUUM, and the lock to change it.)
                cursor.execute("PRAGMA auto_vacuum=INCREMENTAL")
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    if not begin:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get(WRITE_OPTION, False)
        begin_transaction(connection, "BEGIN IMMEDIATE" if write else "BEGIN")


def begin_transaction(connection: Connection, statement: str) -> None:
    """Send SQLite's `BEGIN` or `BEGIN IMMEDIATE` (a write that holds the lock from the start)."""
    # Straight to the driver, like the PRAGMAs: transaction control, not a query.
    cursor = connection.connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def set_foreign_keys(connection: Connection, enforced: bool) -> None:
    """Turn SQLite's foreign-key enforcement on or off for this connection (outside any
    transaction: inside one, SQLite ignores the change)."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")
    finally:
        cursor.close()


def set_synchronous(connection: Connection, level: int | None) -> int:
    """Set SQLite's `synchronous` level on this connection (0 OFF, 1 NORMAL, 2 FULL, 3
    EXTRA; None leaves it); return the level it had."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute("PRAGMA synchronous")
        row = cursor.fetchone()
        had = int(row[0]) if row is not None else 2
        if level is not None:
            cursor.execute(f"PRAGMA synchronous={int(level)}")
        return had
    finally:
        cursor.close()


def set_busy_timeout(connection: Connection, milliseconds: int) -> None:
    """Set how long this SQLite connection waits for a lock before failing with SQLITE_BUSY."""
    cursor = connection.connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(milliseconds)}")
    finally:
        cursor.close()


def extend_wal(connection: Connection) -> None:
    """Write SQLite's WAL file out to the size it reaches between checkpoints, in zeros.

    Call it inside a write transaction (which it leaves empty): holding the write lock, no
    other connection appends to the WAL meanwhile. A commit that makes the WAL file longer
    costs an fsync of the file's size as well as of its data, about twice a commit into
    space written before, and a fresh process's first few hundred commits would pay that.
    SQLite ignores whatever follows the WAL's valid frames (as it ignores the frames a
    checkpoint leaves behind), and deletes the file when the last connection closes. Skipped
    on a disk with less than 64 times that size free (256 MB for the usual 4 MB).
    """
    driver = connection.connection.driver_connection
    assert driver is not None
    if driver.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        return
    path = driver.execute("PRAGMA database_list").fetchone()[2]
    pages = driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    page_size = driver.execute("PRAGMA page_size").fetchone()[0]
    wal = Path(f"{path}-wal")
    if not path or pages <= 0 or not wal.exists():
        return  # in memory, no checkpoints to size it by, or no WAL file yet
    size = _WAL_HEADER + pages * (_WAL_FRAME_HEADER + page_size)
    if shutil.disk_usage(wal.parent).free < _ROOM_TO_SPARE * size:
        return  # a small or nearly full disk: its space is worth more than the speed
    with wal.open("r+b") as file:
        end = file.seek(0, os.SEEK_END)
        if end >= size:
            return
        file.write(bytes(size - end))
        file.flush()
        os.fsync(file.fileno())


def checkpoint_wal(connection: Connection) -> None:
    """Copy what the WAL holds into the database file, as far as no reader still needs it,
    without waiting for anyone (a PASSIVE checkpoint). Outside a transaction."""
    driver = connection.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


_WAL_HEADER, _WAL_FRAME_HEADER = 32, 24  # bytes, as SQLite's WAL format lays them out
_ROOM_TO_SPARE = 64  # `extend_wal` writes only where 64 times the WAL's size is free

_SQLITE_BUSY = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED
# ... and SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_PROTOCOL: faults that may pass.
_SQLITE_PASSING = _SQLITE_BUSY | {10, 13, 14, 15}


def _sqlite_passing(error: Exception) -> bool:
    """Whether a SQLite error is a fault that may pass (a lock, the disk), not a broken query."""
    code = getattr(getattr(error, "orig", error), "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_PASSING


def is_sqlite_busy(error: Exception) -> bool:
    """Whether `error` (SQLAlchemy's, or the driver's own) is SQLite refusing for a lock held
    elsewhere (not a broken query)."""
    code = getattr(getattr(error, "orig", error), "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_BUSY


@asynccontextmanager
async def translate_errors(action: str) -> AsyncIterator[None]:
    """Turn driver and SQLAlchemy errors raised inside the block into flowstore errors."""
    try:
        yield
    except TRANSLATED as error:
        raise store_error(action, error) from error


TRANSLATED: Final = (exc.SQLAlchemyError, OSError, sqlite3.Error)
"""What `store_error` translates: SQLAlchemy's errors (which wrap the drivers'), OSError, and
sqlite3's own (raised by statements sent straight to the driver, such as `BEGIN IMMEDIATE`)."""

_PASSING_SQLSTATES: Final = ("08", "53", "57P", "40001", "40P01", "55P03")
"""PostgreSQL error codes (prefixes) of faults that pass: a lost or refused connection (08), the
server short of resources (53), shutting down, restarting or starting up (57P), a
serialization failure or deadlock (40001, 40P01), a lock not available (55P03)."""


def store_error(action: str, error: Exception) -> StoreError:
    """The flowstore error for a driver or SQLAlchemy error raised while doing `action`.

    Faults that pass (a lock held elsewhere, a lost connection, a server restarting) are
    `StoreUnavailable`: the same call may succeed later. Others are a plain `StoreError`.
    """
    if isinstance(error, sqlite3.Error):
        if _sqlite_passing(error):
            return StoreUnavailable(f"{action}: {error}")
        return StoreError(f"{action}: {error}")
    if isinstance(error, exc.IntegrityError):
        return IntegrityConflict(f"{action}: {_driver_message(error)}")
    sqlite_error = isinstance(error, exc.DBAPIError) and isinstance(error.orig, sqlite3.Error)
    if sqlite_error and not _sqlite_passing(error):  # a broken query: trying again won't help
        return StoreError(f"{action}: {_driver_message(error)}")  # type: ignore[arg-type]
    if isinstance(error, exc.OperationalError | exc.InterfaceError):
        # SQLite's "database is locked", lost connections and refused logins all land here.
        return StoreUnavailable(f"{action}: {_driver_message(error)}")
    if isinstance(error, exc.DBAPIError):
        sqlstate = str(getattr(error.orig, "sqlstate", None) or "")
        if error.connection_invalidated or sqlstate.startswith(_PASSING_SQLSTATES):
            return StoreUnavailable(f"{action}: {_driver_message(error)}")
        return StoreError(f"{action}: {_driver_message(error)}")
    if isinstance(error, OSError):
        # asyncpg raises OSError subclasses when the server cannot be reached.
        return StoreUnavailable(f"{action}: {error}")
    return StoreError(f"{action}: {error}")


def _driver_message(error: exc.DBAPIError) -> str:
    return str(error.orig).strip().splitlines()[0] if error.orig is not None else str(error)
