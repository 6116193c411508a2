"""`SQLStore`: the `Store` protocol over SQLAlchemy, for SQLite and PostgreSQL.

Each part of the protocol has its class here (`runs.py`, `operations.py`, `data.py`), all
over one connector, `transactions.SQLTransactions`; `SQLStore` is every part in one.

Each method names its transaction (a write or a read) and the repository function that runs
in it; the SQL itself lives in `repositories/`, written once as synchronous SQLAlchemy Core
functions of a `Connection`. How a transaction runs on each backend is `transactions.py`:

- On PostgreSQL, through the async engine (asyncpg) with `AsyncConnection.run_sync`, so the
  event loop never blocks.
- On SQLite, each transaction runs whole on a thread that owns a connection
  (`sqlite_threads.SQLiteThreads`): writes on one writer thread, each starting with
  `BEGIN IMMEDIATE` so writers in other processes queue on SQLite's lock instead of losing
  updates; reads on a few reader threads. The async engine (aiosqlite) checks and upgrades
  the schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime

from flowstore.logs import engine_logger
from flowstore.store import migrate
from flowstore.store.engine import (
    StoreSettings,
    create_engine,
    extend_wal,
    normalize_url,
)
from flowstore.store.protocol import Store
from flowstore.store.repositories import commits
from flowstore.store.sql.data import SQLBreakers, SQLCache, SQLMemory, SQLTelemetry
from flowstore.store.sql.operations import SQLQueues, SQLRetention, SQLSchedules
from flowstore.store.sql.runs import SQLRunLog, SQLRuns, SQLWorkers

__all__ = ["SQLStore", "open_store"]

log = engine_logger("flowstore.store")


async def open_store(
    settings: StoreSettings | str | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> SQLStore:
    """Open the store at a URL (or with full settings), checking its schema revision.

    An embedded SQLite database is upgraded in place when it is behind; a PostgreSQL database
    is not (unless `auto_upgrade=True`): the error names the `flowstore db upgrade` command.
    """
    if settings is None:
        settings = StoreSettings()
    elif isinstance(settings, str):
        settings = StoreSettings(url=settings)
    engine = create_engine(settings)
    is_sqlite = engine.dialect.name == "sqlite"
    auto_upgrade = is_sqlite if settings.auto_upgrade is None else settings.auto_upgrade
    auto_upgrade = auto_upgrade and not settings.read_only
    url = normalize_url(settings.url).render_as_string(hide_password=True)
    try:
        await migrate.check_schema(engine, auto_upgrade=auto_upgrade, url=url)
    except BaseException:
        await engine.dispose()
        raise
    store = SQLStore(engine, settings, clock=clock)
    if is_sqlite:
        store.watch_file()
    return store


class SQLStore(
    SQLRuns,
    SQLWorkers,
    SQLRunLog,
    SQLQueues,
    SQLSchedules,
    SQLRetention,
    SQLCache,
    SQLMemory,
    SQLTelemetry,
    SQLBreakers,
    Store,
):
    """The store over one SQLAlchemy async engine. Create it with `open_store`."""

    async def warm_up(self) -> None:
        """Get SQLite ready before the first run, not during it (an `Engine` calls this as it
        starts; a command that only reads never does): every connection open; the WAL file
        written out to its working size (`extend_wal`), when the disk has room to spare; and
        a run's usual commits rehearsed and rolled back on the writer thread
        (`commits.rehearse`), which compiles their statements. Both in writer transactions
        that never wait for SQLite's lock: when another process holds it, the first runs do
        that work instead. Nothing on PostgreSQL."""
        if self._writer is None:
            return
        try:
            await self._try_write("warming up", extend_wal)
        except Exception as error:  # only a warm-up
            log.debug("writing out the WAL failed: %s", error)
        await self.connected()
        with contextlib.suppress(Exception):  # commits.Rehearsed, or only a warm-up failed
            await self._try_write(
                "rehearsing a run's commits",
                commits.rehearse,
                now=self._now(),
                encode=self._encode,
            )
