"""SQLite access from asyncio: threads that each own one connection and run transactions whole.

aiosqlite crosses threads three or four times per statement (about 100 us each on a small VM),
so a five-statement commit cost milliseconds, and a read of one row about one. Here a
transaction crosses once each way: the event loop puts the work on a queue, a thread runs
BEGIN, the work and COMMIT on its own connection, and hands the result back with
`call_soon_threadsafe`.

Writes go to one writer thread (SQLite has one writer at a time) and begin with
`BEGIN IMMEDIATE`, so writers in other processes queue on SQLite's lock instead of losing
updates. Reads go to a few reader threads and begin with a deferred `BEGIN`: one consistent
snapshot per read, never the write lock. A caller cancelled while its transaction runs does not
stop it: the transaction commits or rolls back whole, as if the caller had crashed.

The transactions on the path of a run do not cross threads at all when they need not wait:
`LoopConnection` runs them on the event loop's thread, on a connection of its own that never
waits for a lock. Point reads (a run, a node's cache entry) take about 8 us there (p99 about
14 us, measured on a 2-core VM), less than the loop's own share of handing them to a thread,
and the two handoffs they save cost about 130 us idle and 280 us next to a busy writer. The
small commits a run waits for (a `sync` chain's) go there too while the writer thread is
idle: a 10-node chain took 5.0-5.5 ms there against 7.5-9 ms through the writer thread (the
fsync, 150 us, is paid either way). The loop is held for such a commit, so when commits there
are slow (a slow disk), the next ones go back to the writer thread for a while; and that
connection never checkpoints the WAL itself: the writer thread does, outside any
transaction, every so many commits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from flowstore.logs import engine_logger
from flowstore.store import serde
from flowstore.store.engine import (
    StoreSettings,
    begin_transaction,
    checkpoint_wal,
    install_sqlite_hooks,
    is_sqlite_busy,
    set_busy_timeout,
    set_synchronous,
)
from flowstore.store.schema import runs

__all__ = ["BUSY", "LoopConnection", "SQLiteThreads", "sqlite_sync_engine"]

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
        # Each connection stays on one thread, but `LoopConnection` opens its own on another.
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
            while (request := self._requests.get()) is not None:
                # Whatever fails (connecting included) goes back to the caller; the thread
                # stays, and connects again for the next request.
                try:
                    if conn is None or conn.closed or conn.invalidated:
                        conn = None
                        conn = self._engine.connect()
                    request.settle(self._run(conn, request), None)
                except BaseException as error:
                    request.settle(None, error)
                    if conn is not None and not _usable(conn):
                        with contextlib.suppress(Exception):
                            conn.close()
                        conn = None
        finally:
            if conn is not None:
                conn.close()

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


def _usable(conn: Connection) -> bool:
    """Whether a connection can take the next request (not closed, not invalidated, and
    its database still answers)."""
    if conn.closed or conn.invalidated:
        return False
    try:
        driver = conn.connection.driver_connection
        return driver is not None and driver.execute("SELECT 1").fetchone() is not None
    except Exception:
        return False


_NORMAL = 1
"""SQLite's `synchronous=NORMAL`: in WAL mode, commits do not wait for the disk."""


class _Busy(enum.Enum):
    BUSY = "busy"


BUSY: Final = _Busy.BUSY
"""What `LoopConnection` returns when it did not run the transaction: go to the threads."""


_COMMITS_KEPT, _COMMITS_JUDGED = 8, 3
"""`LoopConnection` judges the disk by the median of its last 8 commits, from the third."""


class LoopConnection:
    """Short transactions on the event loop's own thread, on one connection that never waits.

    The connection is opened on a thread at first use (opening reads the schema, which takes
    milliseconds); until it is ready, and whenever the database is busy (SQLite's lock, WAL
    recovery), `read` and `write` return `BUSY` at once (its busy timeout is 0) and the caller
    goes to the threads instead. Only the thread that first used it runs on it.

    The loop waits for a write's COMMIT (its fsync): when the median of the last few took
    longer than `slow_commit_s` (a slow disk, not one stall), `writes_ok` is false for
    `slow_pause_s`. The connection never checkpoints the WAL: `checkpoint_due` says when the
    writer thread should (every `checkpoint_every` writes).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        slow_commit_s: float = 0.002,
        slow_pause_s: float = 10.0,
        checkpoint_every: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._conn: Connection | None = None
        self._opening: asyncio.Future[Connection] | None = None
        self._owner: int | None = None
        self._slow_commit_s = slow_commit_s
        self._slow_pause_s = slow_pause_s
        self._checkpoint_every = checkpoint_every
        self._clock = clock
        self._commits: collections.deque[float] = collections.deque(maxlen=_COMMITS_KEPT)
        self._writes_since_checkpoint = 0
        self._paused_until = 0.0

    def read(self, work: Callable[[Connection], T]) -> T | _Busy:
        """Run `work` in one read transaction here, now; or return `BUSY` without running it."""
        return self._run(work, "BEGIN", None)

    def write(self, work: Callable[[Connection], T]) -> T | _Busy:
        """Run `work` in one write transaction here, now (`BEGIN IMMEDIATE`); or return `BUSY`
        with nothing written (SQLite's lock is held elsewhere, or the connection is not open)."""
        done = self._run(work, "BEGIN IMMEDIATE", self._committed)
        if done is not BUSY:
            self._writes_since_checkpoint += 1
        return done

    @property
    def writes_ok(self) -> bool:
        """Whether writes may run here now (commits were not slow lately)."""
        return self._clock() >= self._paused_until

    def checkpoint_due(self) -> bool:
        """True once every `checkpoint_every` writes here: time to checkpoint the WAL."""
        if self._writes_since_checkpoint < self._checkpoint_every:
            return False
        self._writes_since_checkpoint = 0
        return True

    def _committed(self, took: float) -> None:
        self._commits.append(took)
        if len(self._commits) >= _COMMITS_JUDGED:
            median = sorted(self._commits)[len(self._commits) // 2]
            if median > self._slow_commit_s:
                self._paused_until = self._clock() + self._slow_pause_s
                self._commits.clear()

    def _run(
        self,
        work: Callable[[Connection], T],
        begin: str,
        committed: Callable[[float], None] | None,
    ) -> T | _Busy:
        conn = self._connection()
        if conn is None:
            return BUSY
        transaction = conn.begin()
        try:
            begin_transaction(conn, begin)
            result = work(conn)
            started = self._clock()
            transaction.commit()
        except (OperationalError, sqlite3.OperationalError) as error:  # BEGIN: the driver's
            transaction.rollback()
            if is_sqlite_busy(error):  # rolled back whole: the caller can go elsewhere
                return BUSY
            raise
        except BaseException:
            transaction.rollback()
            raise
        if committed is not None:
            committed(self._clock() - started)
        return result

    async def open(self) -> None:
        """Open the connection now, on a thread, rather than at first use."""
        if self._owner is None:
            self._connection()
        if self._opening is not None:
            await asyncio.gather(self._opening, return_exceptions=True)

    def close(self) -> None:
        """Close the connection (on the loop, before the engine is disposed)."""
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connection(self) -> Connection | None:
        if self._owner is None:
            self._owner = threading.get_ident()
            self._opening = asyncio.ensure_future(asyncio.to_thread(self._open))
            self._opening.add_done_callback(self._opened)
            return None
        if self._owner != threading.get_ident():
            return None
        return self._conn

    def _open(self) -> Connection:
        conn = self._engine.connect()
        set_busy_timeout(conn, 0)
        driver = conn.connection.driver_connection
        assert driver is not None
        driver.execute("PRAGMA wal_autocheckpoint=0")  # the writer thread checkpoints
        with contextlib.suppress(Exception):  # a database without the schema yet
            conn.execute(_WARM_UP).close()
        conn.rollback()
        return conn

    def _opened(self, opening: asyncio.Future[Connection]) -> None:
        # A connection that could not open leaves everything to the threads.
        if not opening.cancelled() and opening.exception() is None:
            self._conn = opening.result()


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
