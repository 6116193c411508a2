"""Waiting for runs to end: every waiter of one process shares one poll of the store.

A run that ends in this process wakes its waiters at once (`RunWaiters.ended`). A run that
executes elsewhere is seen by one task that asks the store which of all the awaited runs have
ended, in one query per look: two thousand waiters cost one query per interval, not two
thousand.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from flowstore.errors import ExecutionError, StoreUnavailable
from flowstore.logs import engine_logger
from flowstore.store.records import RunId

__all__ = ["RunWaiters"]

_log = engine_logger("flowstore.engine")

_FIRST_LOOK = 0.01
"""Seconds before the first look at a newly awaited run; each look after waits twice as long,
up to the poll interval (short runs elsewhere are seen soon, long ones cost little)."""


class RunWaiters:
    """The futures of the callers waiting for runs to end, and the one task that polls."""

    def __init__(self, store: Callable[[], Any], poll_seconds: float) -> None:
        self._store = store
        self._poll_seconds = poll_seconds
        self._futures: dict[RunId, list[asyncio.Future[None]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self._new = asyncio.Event()

    async def until_ended(self, run_id: RunId) -> None:
        """Return once `run_id` has ended (ended here, or seen ended in the store)."""
        ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.setdefault(run_id, []).append(ended)
        self._new.set()
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            await ended
        finally:
            futures = self._futures.get(run_id, [])
            with contextlib.suppress(ValueError):
                futures.remove(ended)
            if not futures:
                self._futures.pop(run_id, None)

    async def close(self) -> None:
        """Stop looking (before the store closes: a look in flight would hold a connection
        the closing pool can no longer close)."""
        poller, self._poller = self._poller, None
        if poller is not None and not poller.done():
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
        for futures in self._futures.values():  # no one will tell them now
            for future in futures:
                if not future.done():
                    future.set_exception(ExecutionError("closed while waiting for the run"))

    def ended(self, run_id: RunId) -> None:
        """`run_id` has ended: wake its waiters."""
        for future in self._futures.pop(run_id, []):
            if not future.done():
                future.set_result(None)

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        delay = _FIRST_LOOK
        while self._futures:
            look_at = loop.time() + delay
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), timeout=delay)
            if self._new.is_set():
                # A new waiter (its caller has just read its run): look at every awaited run
                # soon, but at most once per first-look interval however many arrive.
                self._new.clear()
                await asyncio.sleep(max(0.0, min(look_at - loop.time(), _FIRST_LOOK)))
                delay = _FIRST_LOOK
            else:
                delay = min(delay * 2, self._poll_seconds)
            try:
                for run_id in await self._store().ended_runs(list(self._futures)):
                    self.ended(run_id)
            except StoreUnavailable as error:  # passing: look again later
                _log.warning("waiting for runs: %s", error)
            except Exception as error:  # the store is closed or broken: tell every waiter
                for futures in self._futures.values():
                    for future in futures:
                        if not future.done():
                            future.set_exception(error)
                return
