"""Reading runs: one run, listings, a run's events, and waiting for a run to end.

The part of `Engine` that only reads: it works the same whether a run executes here, in
another process, or has ended long ago.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowstore.errors import ExecutionError, RunNotFound
from flowstore.runtime.history import RunAt, state_at
from flowstore.runtime.models import Run
from flowstore.runtime.sealing import Sealer
from flowstore.runtime.streams import LiveRuns
from flowstore.runtime.streams import follow as follow_run
from flowstore.runtime.waiting import RunWaiters
from flowstore.store.records import RunId, RunQuery, RunRecord, RunStatus

if TYPE_CHECKING:
    from flowstore.events import StreamEvent

__all__ = ["RunReading"]


class RunReading:
    """`Engine`'s reads (mixed into it): `get_run`, `list_runs`, `events` and `wait`."""

    _live: LiveRuns
    _poll_seconds: float
    # Callers of `wait`: woken at once when a run ends here (`_run_ended`), else by one poll.
    _waiting: RunWaiters
    # Opens the secret fields sealed in what is read; None without a secrets key.
    _sealer: Sealer | None

    _store: Any

    @property
    def store(self) -> Any:
        """The store runs are read from (open inside `async with`)."""
        if self._store is None:
            kind = type(self).__name__
            raise ExecutionError(
                f"the {kind.lower()} is not open: use `async with {kind}(...) as {kind.lower()}`"
            )
        return self._store

    async def wait(self, run_id: str) -> Run:
        """Wait until a run has ended, wherever it runs, and return it. The waiters of one
        process share one poll of the store (`runtime/waiting.py`).

        Bound the wait with `asyncio.timeout(...)` around the call.
        """
        run = await self.get_run(run_id)
        while not run.status.is_terminal:  # woken also when it stops here to wait
            await self._waiting.until_ended(RunId(run_id))
            run = await self.get_run(run_id)
        return run

    def _run_ended(self, run_id: RunId) -> None:
        self._waiting.ended(run_id)

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

    async def expand_run_id(self, prefix: str) -> str:
        """The id of the one run whose id starts with `prefix` (a whole id, or as few of its
        first characters as tell it apart, as git does with commits).

        Raises:
            RunNotFound: No run's id starts with `prefix`, or several do (they are named).
        """
        found = await self.store.find_run_ids(prefix, limit=6)
        if len(found) == 1 or prefix in found:
            return prefix if prefix in found else str(found[0])
        if not found:
            raise RunNotFound(f"no run has an id that starts with {prefix!r}")
        shown = ", ".join(found[:5]) + (", ..." if len(found) > 5 else "")
        raise RunNotFound(f"run id {prefix!r} is ambiguous: it starts {shown}; give more of it")

    async def get_run(self, run_id: str) -> Run:
        """One run. Raises `RunNotFound`."""
        return self._run(await self.store.get_run(RunId(run_id)))

    async def state_at(self, run_id: str, seq: int) -> RunAt:
        """The run as it was at sequence number `seq` of its log: its status, and each node
        execution's status, attempt and output then (`flowstore runs show RUN --at SEQ`).

        Raises:
            RunNotFound: No run has this id.
            InvalidValue: `seq` is not a number of its log.
        """
        at = await state_at(self.store, RunId(run_id), seq)
        if self._sealer is None:
            return at
        opened = [dataclasses.replace(node, output=self._opened(node.output)) for node in at.nodes]
        return dataclasses.replace(at, nodes=opened)

    def _run(self, record: RunRecord) -> Run:
        """The public view of a stored run, its sealed secret fields opened with the key."""
        run = Run.from_record(record)
        if self._sealer is None:
            return run
        return run.model_copy(
            update={"inputs": self._opened(run.inputs), "output": self._opened(run.output)}
        )

    def _opened(self, value: Any) -> Any:
        """`value` with its sealed secret fields opened, when there is a key."""
        return value if self._sealer is None else self._sealer.open(value)

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
        return [self._run(record) for record in await self.store.list_runs(query)]
