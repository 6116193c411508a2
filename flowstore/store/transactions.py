"""Transactions on one SQLAlchemy async engine: the plumbing under `SQLStore`."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from flowstore.errors import DatabaseGone
from flowstore.store import serde
from flowstore.store.engine import TRANSLATED, StoreSettings, sqlite_path, store_error
from flowstore.store.notices import Notices, WorkHeard
from flowstore.store.records import RunId
from flowstore.store.sqlite_threads import SQLiteThreads, SQLiteWriter, sqlite_sync_engine

__all__ = ["SQLTransactions", "Work"]

P = ParamSpec("P")
T = TypeVar("T")
Work = Callable[Concatenate[Connection, P], T]
"""A repository function: runs on a connection inside a transaction."""

# Reads are short; two threads keep one slow listing from holding up a run's reads.
_SQLITE_READERS = 2


def _utcnow() -> datetime:
    return datetime.now(UTC)


class SQLTransactions:
    """One SQLAlchemy async engine and the transactions run on it, for `SQLStore`.

    On PostgreSQL a transaction runs through the async engine with `run_sync`; on SQLite it
    runs whole on a thread that owns a connection (`sqlite_threads`): every write on the one
    writer thread, which commits the writes waiting together, and reads on a few reader
    threads. Driver errors become flowstore errors here.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        settings: StoreSettings,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self._now = clock or _utcnow
        self._encode = partial(serde.encode, limits=settings.value_limits)
        self._writer: SQLiteWriter | None = None
        self._readers: SQLiteThreads | None = None
        self._sync_engine: Engine | None = None
        self._file: tuple[Path, int, int] | None = None
        self._notices = Notices(engine) if engine.dialect.name == "postgresql" else None
        if engine.dialect.name == "sqlite":
            sync = self._sync_engine = sqlite_sync_engine(
                engine, settings, connections=2 + _SQLITE_READERS
            )
            busy = int(settings.busy_timeout_ms)
            self._writer = SQLiteWriter(sync, busy_timeout_ms=busy, check=self._check_file)
            self._readers = SQLiteThreads(
                sync,
                threads=_SQLITE_READERS,
                begin="BEGIN",
                name="flowstore-reader",
                busy_timeout_ms=busy,
            )

    @property
    def dialect(self) -> str:
        """The backend's name: `sqlite` or `postgresql`."""
        return str(self.engine.dialect.name)

    def encode(self, value: Any, *, what: str) -> Any:
        return self._encode(value, what=what)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def watch(self, run_id: RunId, wake: asyncio.Event) -> AbstractAsyncContextManager[bool]:
        """Set `wake` whenever a commit of the run lands, from any process, while the block
        runs; yields whether it will (PostgreSQL's LISTEN/NOTIFY) or the caller must poll."""
        if self._notices is None:
            return contextlib.nullcontext(False)
        return self._notices.watch(run_id, wake)

    def watch_work(self, heard: WorkHeard) -> AbstractAsyncContextManager[bool]:
        """Call `heard(graph_hash)` whenever a run becomes claimable, from any process, while
        the block runs; yields whether it will (PostgreSQL's LISTEN/NOTIFY) or workers only
        poll."""
        if self._notices is None:
            return contextlib.nullcontext(False)
        return self._notices.watch_work(heard)

    async def _checkpoint(self) -> None:
        """SQLite: copy the WAL into the database now, after a bulk write, so that the small
        commit of another process that next fills the WAL does not pay for it. A failure is
        logged (the next checkpoint copies the rest)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer.checkpoint()

    async def close(self) -> None:
        if self._notices is not None:
            await self._notices.close()
        for threads in (self._writer, self._readers):
            if threads is not None:
                await threads.close()
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        await self.engine.dispose()

    async def connected(self) -> None:
        """Wait until SQLite's connections are open (nothing on PostgreSQL)."""
        for threads in (self._writer, self._readers):
            if threads is not None:
                await threads.connected()

    def watch_file(self) -> None:
        """Remember which file the SQLite database is, so that every write transaction first
        checks it is still there (a file deleted or replaced under an open store would
        swallow every commit without an error)."""
        path = sqlite_path(self.settings.url)
        if path is not None:
            stat = path.stat()
            self._file = (path, stat.st_dev, stat.st_ino)

    def _check_file(self) -> None:
        if self._file is None:
            return
        path, device, inode = self._file
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            stat = None
        if stat is None or (stat.st_dev, stat.st_ino) != (device, inode):
            raise DatabaseGone(
                f"the database file {path} was {'deleted' if stat is None else 'replaced'} "
                "while flowstore had it open: nothing more is written; restart on the "
                "database that holds the runs"
            )

    async def _write(self, action: str, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `work` in one write transaction."""
        return await self._on_writer(action, lambda conn: work(conn, *args, **kwargs), True)

    async def _write_alone(
        self, action: str, work: Work[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`_write` for work that is a single statement: on PostgreSQL it runs without BEGIN
        and COMMIT (the statement is a transaction of its own), two round trips fewer of
        three. Work that may run more statements must not come here unless those only read."""
        if self._writer is not None:
            return await self._write(action, work, *args, **kwargs)
        try:
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                return await conn.run_sync(lambda sync: work(sync, *args, **kwargs))
        except TRANSLATED as error:
            raise store_error(action, error) from error

    async def _try_write(
        self, action: str, work: Work[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`_write` that fails at once, instead of waiting, when another process holds SQLite's
        lock (a StoreError)."""
        return await self._on_writer(action, lambda conn: work(conn, *args, **kwargs), False)

    async def _write_lazily(
        self, action: str, work: Work[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`_write` for work that is simply done again if a power cut undoes it (deleting
        old runs, giving pages back): on SQLite its commit does not wait for the disk, so it
        holds the write lock for less; the next checkpoint makes it durable."""
        return await self._on_writer(
            action, lambda conn: work(conn, *args, **kwargs), True, lazy=True
        )

    async def _on_writer(
        self,
        action: str,
        work: Callable[[Connection], T],
        wait_for_lock: bool,
        *,
        lazy: bool = False,
    ) -> T:
        try:
            if self._writer is not None:
                return await self._writer.run(work, wait_for_lock=wait_for_lock, lazy=lazy)
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        except TRANSLATED as error:
            raise store_error(action, error) from error

    async def _read(self, action: str, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `work` in one read transaction (a consistent snapshot; no write lock)."""
        try:
            if self._readers is not None:
                return await self._readers.run(lambda conn: work(conn, *args, **kwargs))
            async with self.engine.connect() as conn:
                return await conn.run_sync(work, *args, **kwargs)
        except TRANSLATED as error:
            raise store_error(action, error) from error
