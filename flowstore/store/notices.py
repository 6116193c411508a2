"""Wake-ups when a run's log grows, from any process: LISTEN/NOTIFY on PostgreSQL.

Every commit of a run's transitions sends `pg_notify('flowstore_runs', run_id)` in its own
transaction, so the notice is delivered when, and only if, the commit lands. A store that
readers watch through keeps one connection listening on the channel and sets the events of
the readers of that run. SQLite has nothing of the kind: its readers poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowstore.logs import engine_logger
from flowstore.store.records import RunId

__all__ = ["CHANNEL", "RunNotices", "notify_run"]

CHANNEL = "flowstore_runs"

log = engine_logger("flowstore.store")


def notify_run(conn: Connection, run_id: RunId) -> None:
    """Tell the run's readers, once this transaction commits, that its log grew."""
    conn.execute(select(func.pg_notify(CHANNEL, str(run_id))))


class RunNotices:
    """One listening connection, and the events of the readers of each run."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._readers: dict[str, set[asyncio.Event]] = {}
        self._conn: AsyncConnection | None = None
        self._opening = asyncio.Lock()

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

    async def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    async def _listen(self) -> bool:
        async with self._opening:
            if self._conn is not None and not self._conn.closed:
                return True
            try:
                conn = await self._engine.connect()
                raw: Any = await conn.get_raw_connection()
                await raw.driver_connection.add_listener(CHANNEL, self._heard)
            except Exception as error:  # readers poll instead
                log.warning("cannot listen for run notices: %s", error)
                return False
            self._conn = conn
            return True

    def _heard(self, _conn: Any, _pid: int, _channel: str, run_id: str) -> None:
        for wake in self._readers.get(run_id, ()):
            wake.set()
