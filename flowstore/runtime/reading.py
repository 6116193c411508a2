"""Reading runs: one run, listings, a run's events, and waiting for a run to end.

The part of `Engine` that only reads: it works the same whether a run executes here, in
another process, or has ended long ago.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowstore.runtime.models import Run
from flowstore.runtime.streams import LiveRuns
from flowstore.runtime.streams import follow as follow_run
from flowstore.store.records import RunId, RunQuery, RunStatus

if TYPE_CHECKING:
    from flowstore.events import StreamEvent

__all__ = ["RunReading"]


class RunReading:
    """`Engine`'s reads (mixed into it): `get_run`, `list_runs`, `events` and `wait`."""

    _live: LiveRuns
    _poll_seconds: float
    # Callers of `wait`, by run: woken at once when a run ends here (`_run_ended`).
    _waiters: dict[str, list[asyncio.Future[None]]]

    @property
    def store(self) -> Any:
        """The store runs are read from."""
        raise NotImplementedError

    async def wait(self, run_id: str) -> Run:
        """Wait until a run has ended, wherever it runs, and return it.

        Bound the wait with `asyncio.timeout(...)` around the call.
        """
        delay = 0.01
        while True:
            run = await self.get_run(run_id)
            if run.status.is_terminal:
                return run
            ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            waiters = self._waiters.setdefault(run_id, [])
            waiters.append(ended)
            try:  # ended here, or poll: it may run elsewhere
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(ended), timeout=delay)
            finally:
                with contextlib.suppress(ValueError):
                    waiters.remove(ended)
                if not waiters and self._waiters.get(run_id) is waiters:
                    del self._waiters[run_id]
            delay = min(delay * 2, self._poll_seconds)

    def _run_ended(self, run_id: RunId) -> None:
        for waiter in self._waiters.pop(str(run_id), []):
            if not waiter.done():
                waiter.set_result(None)

    def events(
        self, run_id: str, *, after: int = 0, follow: bool = True
    ) -> AsyncIterator[StreamEvent]:
        """The run's events after sequence number `after`, in order, each once (see
        `flowstore.events`): with `follow`, live until the run ends, wherever it executes;
        else those in its log now. Raises `RunNotFound` once iterated, for an unknown run."""

        async def events() -> AsyncIterator[StreamEvent]:
            await self.store.get_run(RunId(run_id))
            async for event in follow_run(
                self.store, self._live, RunId(run_id), after=after, live=follow
            ):
                yield event

        return events()

    async def get_run(self, run_id: str) -> Run:
        """One run. Raises `RunNotFound`."""
        return Run.from_record(await self.store.get_run(RunId(run_id)))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | Sequence[RunStatus] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs, newest first, filtered by workflow, status and creation time."""
        statuses = None
        if status is not None:
            statuses = frozenset([status] if isinstance(status, RunStatus) else status)
        query = RunQuery(
            workflow=workflow,
            statuses=statuses,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
        )
        return [Run.from_record(record) for record in await self.store.list_runs(query)]
