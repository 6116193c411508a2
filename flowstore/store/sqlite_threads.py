"""SQLite access from asyncio: threads that each own one connection and run transactions whole.

aiosqlite crosses threads three or four times per statement (about 100 us each on a small VM),
so a five-statement commit cost milliseconds, and a read of one row about one. Here a
transaction crosses once each way: the event loop puts the work on a queue, a thread runs
BEGIN, the work and COMMIT on its own connection, and hands the result back with
`call_soon_threadsafe`. A caller cancelled while its transaction runs does not stop it: the
transaction commits or rolls back whole, as if the caller had crashed.

Reads go to a few reader threads (`SQLiteThreads`) and begin with a deferred `BEGIN`: one
consistent snapshot per read, never the write lock.

Every write goes to one writer thread (`SQLiteWriter`), the only path to the database for
writes: SQLite has one writer at a time anyway, and one thread that owns it can do what many
cannot, commit together. It takes every write waiting in its queue at once (at most
`_MOST_AT_ONCE`), runs them in one transaction that begins with `BEGIN IMMEDIATE` (so writers
in other processes queue on SQLite's lock instead of losing updates), and commits once: one
fsync for them all, the cost that dominates a small commit (about 0.2 ms here, against about
10 us per row written). When a write fails, the transaction is rolled back and run again with
each write inside a savepoint of its own: the failing one rolls back to its savepoint alone,
and its caller gets the error; the others commit. (Savepoints on every transaction would
cost SQLite's part of each write about a quarter more, and writes rarely fail. So a write's
work must depend on nothing but the database and its arguments, as every store write does:
it may run twice.)
Each caller is told only after that COMMIT returns, so nobody hears "durable" of rows that are
not. When the COMMIT itself fails, every write in it gets that error, and none is stored.

A lone write (one run, nothing else waiting) is a transaction of its own, without savepoints:
grouping costs it nothing, and with 100 runs at once most commits share their fsync with
dozens of others. Writes that must not share a transaction run alone: one that must not wait
for another process's lock (`wait_for_lock=False`), one that commits without waiting for the
disk (`lazy`), and checkpoints of the WAL, which run outside any transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from flowstore.logs import engine_logger
from flowstore.store import serde
from flowstore.store.engine import (
    StoreSettings,
    begin_transaction,
    checkpoint_wal,
    install_sqlite_hooks,
    set_busy_timeout,
    set_synchronous,
)
from flowstore.store.schema import runs

__all__ = ["SQLiteThreads", "SQLiteWriter", "sqlite_sync_engine"]

T = TypeVar("T")

log = engine_logger("flowstore.store")

# Preparing a statement that names a table makes SQLite read and parse the whole schema.
_WARM_UP = select(runs.c.id).limit(0)


def sqlite_sync_engine(engine: AsyncEngine, settings: StoreSettings, *, connections: int) -> Engine:
    """The pysqlite twin of a store's async SQLite engine, for `SQLiteThreads`."""
    sync = create_sync_engine(
        engine.url.set(drivername="sqlite+pysqlite"),
        json_serializer=serde.serialize_for_driver,
        json_deserializer=serde.decode,
        echo=settings.echo,
        pool_size=connections,
        max_overflow=0,
        # A thread's connection is opened by SQLAlchemy's pool, on whichever thread asks.
        connect_args={"check_same_thread": False},
    )
    install_sqlite_hooks(sync, settings, begin=False)
    return sync


class SQLiteThreads:
    """Threads that each own one SQLite connection and run every transaction given them whole.

    Requests arrive on one queue and results go back with `call_soon_threadsafe`: about a third
    cheaper per transaction than an executor here.
    """

    def __init__(
        self, engine: Engine, *, threads: int, begin: str, name: str, busy_timeout_ms: int
    ) -> None:
        self._engine = engine
        self._begin = begin
        self._busy_timeout_ms = busy_timeout_ms
        self._unsettled = 0
        self._requests: queue.SimpleQueue[_Request[Any] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=name, daemon=True) for _ in range(threads)
        ]
        # Counted down on the loop (the store opens on one) as each thread connects.
        self._loop = asyncio.get_running_loop()
        self._unconnected = threads
        self._all_connected = asyncio.Event()
        for thread in self._threads:
            thread.start()

    async def connected(self) -> None:
        """Wait until every thread has opened its connection (or failed to: it retries on
        its first request), a few milliseconds after the threads start."""
        await self._all_connected.wait()

    def _one_connected(self) -> None:
        self._unconnected -= 1
        if self._unconnected == 0:
            self._all_connected.set()

    @property
    def idle(self) -> bool:
        """No transaction is queued or running on the threads (on the loop's thread)."""
        return self._unsettled == 0

    async def run(
        self, work: Callable[[Connection], T], *, wait_for_lock: bool = True, lazy: bool = False
    ) -> T:
        """Run `work` in one transaction on one of the threads; return what it returns.

        With `wait_for_lock=False`, a database locked by another connection fails at once
        (SQLITE_BUSY) instead of waiting out the busy timeout. With `lazy`, the commit does
        not wait for the disk (`synchronous=NORMAL` for it): the write lock is let go
        sooner, and a power cut may undo the transaction (never half of it), until the next
        checkpoint makes it durable. For work that is simply done again when lost.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._unsettled += 1
        request = _Request(loop, future, work, wait_for_lock, self._settled, lazy=lazy)
        self._requests.put(request)
        return await future

    def checkpoint(self) -> asyncio.Future[None]:
        """Queue a PASSIVE checkpoint of the WAL, outside any transaction; returns when it is
        done (a failure is logged; no one need wait). Until it has run the threads are not
        `idle`, so the writes that follow queue behind it and it copies the whole WAL, which
        lets the next write start the WAL over."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        future.add_done_callback(_log_failure)
        self._unsettled += 1
        request = _Request(loop, future, checkpoint_wal, True, self._settled, transaction=False)
        self._requests.put(request)
        return future

    def _settled(self) -> None:
        self._unsettled -= 1

    async def close(self) -> None:
        """Stop every thread once the requests already queued have run."""
        for _ in self._threads:
            self._requests.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    def _serve(self) -> None:
        conn: Connection | None = None
        try:
            # Connect now, not on the first request: opening a connection and reading the
            # schema costs milliseconds that would otherwise land on a run.
            with contextlib.suppress(Exception):  # a failure to connect surfaces on first use
                conn = self._engine.connect()
                conn.execute(_WARM_UP).close()
                conn.rollback()
            with contextlib.suppress(RuntimeError):  # a loop closed already: nobody waits
                self._loop.call_soon_threadsafe(self._one_connected)
            while (requests := self._next()) is not None:
                # Whatever fails (connecting included) goes back to the callers; the thread
                # stays, and connects again for the next requests.
                try:
                    if conn is None or conn.closed or conn.invalidated:
                        conn = None
                        conn = self._engine.connect()
                    self._answer(conn, requests)
                except BaseException as error:
                    _settle_all(requests, [(None, error)] * len(requests))
                    if conn is not None and not _usable(conn):
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()

    def _next(self) -> list[_Request[Any]] | None:
        """The next requests to answer (None: stop)."""
        request = self._requests.get()
        return None if request is None else [request]

    def _answer(self, conn: Connection, requests: list[_Request[Any]]) -> None:
        """Run the requests and settle each; an error that escapes is every request's (none
        has been settled yet: `_serve` settles them all with it)."""
        [request] = requests
        request.settle(self._run(conn, request), None)

    def _run(self, conn: Connection, request: _Request[T]) -> T:
        if not request.transaction:  # a checkpoint: on the driver's connection
            return request.work(conn)
        level = set_synchronous(conn, None) if request.lazy else _NORMAL
        if level <= _NORMAL:
            return self._transaction(conn, request)
        set_synchronous(conn, _NORMAL)
        try:
            return self._transaction(conn, request)
        finally:
            set_synchronous(conn, level)

    def _transaction(self, conn: Connection, request: _Request[T]) -> T:
        if request.wait_for_lock:
            with conn.begin():
                begin_transaction(conn, self._begin)
                return request.work(conn)
        set_busy_timeout(conn, 0)
        try:
            with conn.begin():
                begin_transaction(conn, self._begin)
                return request.work(conn)
        finally:
            set_busy_timeout(conn, self._busy_timeout_ms)


_MOST_AT_ONCE: Final = 256
"""Writes that one transaction of `SQLiteWriter` takes at most: enough to share an fsync among
hundreds of runs, few enough that it holds SQLite's lock for milliseconds, not longer."""

_SAVEPOINT = "flowstore_write"


class _Broken(Exception):
    """The transaction could not go on (SQLite rolled it back whole): every write fails."""


class _OneFailed(Exception):
    """A write of a shared transaction failed; the transaction is rolled back."""


class SQLiteWriter(SQLiteThreads):
    """The one thread that writes: each transaction takes every write waiting and commits
    them once (see the module's notes)."""

    def __init__(
        self, engine: Engine, *, busy_timeout_ms: int, check: Callable[[], None] | None = None
    ) -> None:
        self._check = check  # raises when the writes must not run (the file is gone)
        self._held: _Request[Any] | None = None  # taken from the queue, for the next round
        self._stopping = False
        super().__init__(
            engine,
            threads=1,
            begin="BEGIN IMMEDIATE",
            name="flowstore-writer",
            busy_timeout_ms=busy_timeout_ms,
        )

    def _next(self) -> list[_Request[Any]] | None:
        first, self._held = self._held, None
        if first is None:
            if self._stopping:
                return None
            first = self._requests.get()
            if first is None:
                return None
        taken = [first]
        if not first.shares:
            return taken
        while len(taken) < _MOST_AT_ONCE:
            try:
                more = self._requests.get_nowait()
            except queue.Empty:
                break
            if more is None:  # closing: answer what was taken first
                self._stopping = True
                break
            if not more.shares:
                self._held = more
                break
            taken.append(more)
        return taken

    def _answer(self, conn: Connection, requests: list[_Request[Any]]) -> None:
        if self._check is not None:
            self._check()  # once per transaction, on this thread, not per write on the loop
        if len(requests) == 1:
            super()._answer(conn, requests)
            return
        try:
            outcomes = self._together(conn, requests)
        except _OneFailed:
            # Rolled back, all of them: again, each in a savepoint of its own, so that only
            # the write that fails fails.
            outcomes = self._apart(conn, requests)
        # Committed: now, and only now, each caller hears how its own write went.
        _settle_all(requests, outcomes)

    def _together(
        self, conn: Connection, requests: list[_Request[Any]]
    ) -> list[tuple[Any, BaseException | None]]:
        """Every write in one transaction, as if they were one. No savepoints: inside one,
        SQLite first copies each page a statement changes, about a quarter more work for
        each write. Raises `_OneFailed` (all rolled back) when a write fails."""
        outcomes: list[tuple[Any, BaseException | None]] = []
        with conn.begin():
            begin_transaction(conn, self._begin)
            for request in requests:
                try:
                    outcomes.append((request.work(conn), None))
                except Exception as error:
                    raise _OneFailed from error
        return outcomes

    def _apart(
        self, conn: Connection, requests: list[_Request[Any]]
    ) -> list[tuple[Any, BaseException | None]]:
        """Every write in one transaction, each in a savepoint: one that fails is rolled back
        alone, and its caller gets the error."""
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with conn.begin():
                begin_transaction(conn, self._begin)
                driver = conn.connection.driver_connection
                assert isinstance(driver, sqlite3.Connection)
                for request in requests:
                    outcomes.append(_in_savepoint(conn, driver, request.work))
        except _Broken as broken:
            raise broken.__cause__ or broken from None
        return outcomes


def _in_savepoint(
    conn: Connection, driver: sqlite3.Connection, work: Callable[[Connection], T]
) -> tuple[T | None, BaseException | None]:
    """Run one write of a shared transaction inside a savepoint: (its result, None), or
    (None, its error) with what it wrote rolled back. Raises `_Broken` when the transaction
    itself is gone (SQLite rolls back a whole transaction on some errors: a full disk, I/O)."""
    driver.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        result = work(conn)
    except Exception as error:
        if not driver.in_transaction:
            raise _Broken from error
        try:
            driver.execute(f"ROLLBACK TO {_SAVEPOINT}")
            driver.execute(f"RELEASE {_SAVEPOINT}")
        except sqlite3.Error as failed:
            raise _Broken from failed
        return None, error
    driver.execute(f"RELEASE {_SAVEPOINT}")
    return result, None


def _settle_all(
    requests: list[_Request[Any]], outcomes: list[tuple[Any, BaseException | None]]
) -> None:
    """Settle requests with their outcomes, waking each caller's loop once for them all: a
    wake-up crosses threads and waits for the loop's hold on the GIL, about 0.1 ms under load,
    which paid once per write cost more than the writes."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Request[Any], Any, Any]]] = {}
    for request, (result, error) in zip(requests, outcomes, strict=True):
        by_loop.setdefault(request.loop, []).append((request, result, error))
    for loop, settlements in by_loop.items():
        # A RuntimeError means that loop is closed: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle_each, settlements)


def _settle_each(settlements: list[tuple[_Request[Any], Any, BaseException | None]]) -> None:
    for request, result, error in settlements:
        request._settle(result, error)


def _usable(conn: Connection) -> bool:
    """Whether a connection can take the next request after a failure: not closed, not
    invalidated, its database still answers, and no transaction left open (a COMMIT that
    failed may leave one; it is rolled back here)."""
    if conn.closed or conn.invalidated:
        return False
    try:
        driver = conn.connection.driver_connection
        if not isinstance(driver, sqlite3.Connection):
            return False
        if driver.in_transaction:
            driver.execute("ROLLBACK")
        return driver.execute("SELECT 1").fetchone() is not None
    except Exception:
        return False


_NORMAL = 1
"""SQLite's `synchronous=NORMAL`: in WAL mode, commits do not wait for the disk."""


def _log_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("checkpointing the WAL failed: %s", future.exception())


@dataclass(frozen=True, slots=True)
class _Request(Generic[T]):
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    work: Callable[[Connection], T]
    wait_for_lock: bool
    settled: Callable[[], None] | None
    transaction: bool = True
    lazy: bool = False

    @property
    def shares(self) -> bool:
        """Whether it may share a transaction with other writes (see the module's notes)."""
        return self.transaction and self.wait_for_lock and not self.lazy

    def settle(self, result: T | None, error: BaseException | None) -> None:
        # A RuntimeError means the caller's loop is closed: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self._settle, result, error)

    def _settle(self, result: T | None, error: BaseException | None) -> None:
        if self.settled is not None:
            self.settled()
        if self.future.cancelled():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)  # type: ignore[arg-type]
