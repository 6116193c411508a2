"""Wake-ups from any process: LISTEN/NOTIFY on PostgreSQL.

Two channels, each notice sent with `pg_notify` inside the transaction it tells of, so it is
delivered when, and only if, that transaction commits:

- `flowstore_runs` (payload: a run id): the run's log grew. Readers of the run (`Engine.wait`,
  `events`) wake and read it.
- `flowstore_work` (payload: a graph hash): a run of that definition can be claimed now (it was
  submitted, a signal made it due, its owner released it). Idle workers wake and claim it.

A store keeps one connection listening on both. When that connection is lost (the server
restarted, the network dropped) it is opened again in the background, and everyone watching is
woken once, for what they may have missed. Notices only make things sooner: readers and
workers poll all the same, so nothing is lost while nobody listens. SQLite has no notices.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowstore.logs import engine_logger
from flowstore.store.records import RunId

__all__ = ["CHANNEL", "WORK_CHANNEL", "Notices", "notify_work"]

CHANNEL = "flowstore_runs"
WORK_CHANNEL = "flowstore_work"

log = engine_logger("flowstore.store")

_RELISTEN_SECONDS = (0.1, 0.5, 1.0, 2.0, 5.0)
"""The pauses between attempts to listen again, the last one repeated."""


def notify_work(conn: Connection, graph_hash: str) -> None:
    """Tell idle workers, once this transaction commits, that a run of the definition
    `graph_hash` can be claimed (nothing on SQLite)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(func.pg_notify(WORK_CHANNEL, graph_hash)))


WorkHeard = Callable[[str], None]
"""Called with the graph hash of a run that can be claimed now."""


class Notices:
    """One listening connection; the readers of each run, and the workers waiting for work."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._readers: dict[str, set[asyncio.Event]] = {}
        self._workers: set[WorkHeard] = set()
        self._conn: AsyncConnection | None = None
        self._opening = asyncio.Lock()
        self._relisten: asyncio.Task[None] | None = None
        self._closed = False

    @contextlib.asynccontextmanager
    async def watch(self, run_id: RunId, wake: asyncio.Event) -> AsyncIterator[bool]:
        """Set `wake` whenever a commit of the run lands, for as long as the block runs.

        Yields whether it will (False when the listening connection could not be opened:
        the reader polls instead).
        """
        listening = await self._listen()
        readers = self._readers.setdefault(str(run_id), set())
        readers.add(wake)
        try:
            yield listening
        finally:
            readers.discard(wake)
            if not readers:
                self._readers.pop(str(run_id), None)

    @contextlib.asynccontextmanager
    async def watch_work(self, heard: WorkHeard) -> AsyncIterator[bool]:
        """Call `heard(graph_hash)` whenever a run becomes claimable, while the block runs
        (and with an empty hash when notices may have been missed: look for any work)."""
        listening = await self._listen()
        self._workers.add(heard)
        try:
            yield listening
        finally:
            self._workers.discard(heard)

    async def close(self) -> None:
        self._closed = True
        if self._relisten is not None:
            self._relisten.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._relisten
            self._relisten = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _listen(self, *, quiet: bool = False) -> bool:
        async with self._opening:
            if self._conn is not None and not self._conn.closed:
                return True
            if self._closed:
                return False
            try:
                conn = await self._engine.connect()
                try:
                    raw: Any = await conn.get_raw_connection()
                    driver = raw.driver_connection
                    await driver.add_listener(CHANNEL, self._heard_run)
                    await driver.add_listener(WORK_CHANNEL, self._heard_work)
                    driver.add_termination_listener(self._lost)
                except BaseException:
                    await conn.close()
                    raise
            except Exception as error:  # readers and workers poll instead
                if not quiet:
                    log.warning("cannot listen for notices: %s", error)
                return False
            self._conn = conn
            return True

    def _heard_run(self, _conn: Any, _pid: int, _channel: str, run_id: str) -> None:
        for wake in self._readers.get(run_id, ()):
            wake.set()

    def _heard_work(self, _conn: Any, _pid: int, _channel: str, graph_hash: str) -> None:
        for heard in list(self._workers):
            heard(graph_hash)

    def _lost(self, _driver: Any) -> None:
        """The listening connection is gone: listen again, in the background."""
        if self._closed:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            # Returned to the pool, which finds it closed and discards it.
            asyncio.get_running_loop().create_task(_close_quietly(conn))
        if self._relisten is None or self._relisten.done():
            self._relisten = asyncio.get_running_loop().create_task(self._listen_again())

    async def _listen_again(self) -> None:
        attempt = 0
        while not self._closed and (self._readers or self._workers):
            await asyncio.sleep(_RELISTEN_SECONDS[min(attempt, len(_RELISTEN_SECONDS) - 1)])
            attempt += 1
            if await self._listen(quiet=attempt > 1):
                log.info("listening for notices again")
                self._wake_everyone()  # what was sent while nobody listened
                return

    def _wake_everyone(self) -> None:
        for readers in self._readers.values():
            for wake in readers:
                wake.set()
        for heard in list(self._workers):
            heard("")


async def _close_quietly(conn: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
