"""Taking runs up again: `resume` after a failure or a crash, and a run `Engine.run` lost to
the store, claimed or recreated (the part of `Engine` that takes over runs)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flowstore.definition.changes import spec_changes
from flowstore.errors import ExecutionError, RunNotFound, StoreUnavailable
from flowstore.logs import engine_logger
from flowstore.runtime.definitions import Definitions
from flowstore.runtime.models import Run
from flowstore.runtime.ownership import HeldRuns
from flowstore.store.records import Claim, NewRun, RunId, RunRecord, RunStatus, WorkerId

if TYPE_CHECKING:
    from flowstore.definition.graph import Graph
    from flowstore.runtime.executor import Observer

__all__ = ["RunTakeover"]

_log = engine_logger("flowstore.engine")

_TAKEN_UP_HERE = (RunStatus.WAITING, RunStatus.QUEUED)
"""The statuses of a run `run` or `resume` waits to take up again here."""

_QUEUED_LOOK_SECONDS = 0.1
"""How often `run` looks whether its run's queue has room for it."""


class RunTakeover:
    """`Engine.resume`, and the claims that take a run over (mixed into `Engine`)."""

    worker_id: WorkerId
    lease_seconds: float
    _poll_seconds: float
    _store_retry_seconds: float
    _held: HeldRuns
    _definitions: Definitions

    if TYPE_CHECKING:  # provided by `Engine` and `RunReading`

        @property
        def store(self) -> Any: ...

        async def _execute(
            self,
            run: Claim | NewRun,
            graph: Graph,
            inputs: Any,
            observe: Observer | None,
        ) -> RunId: ...

        async def wait(self, run_id: str) -> Run: ...

        async def get_run(self, run_id: str) -> Run: ...

        def _run(self, record: RunRecord) -> Run: ...

        async def _dead_local_workers(self) -> list[WorkerId]: ...

    async def resume(
        self,
        run_id: str,
        *,
        allow_changed_definition: bool = False,
        observe: Observer | None = None,
    ) -> Run:
        """Continue an interrupted or failed run from its last committed state, here.

        Nodes that succeeded are not run again; the node that failed runs again. A waiting
        run is taken up when it is due (its sleep ends, its signal comes), as `run` does,
        unless another worker takes it first; either way this returns once it has ended.
        When the store fails under the run, it is taken up again, as `run` does.

        A run whose owner is alive and holds its lease is refused; so is a run whose
        workflow changed since it started, unless `allow_changed_definition` says to run the
        new definition over the committed results.
        """
        record = await self.store.get_run(RunId(run_id))
        if record.status.is_terminal and record.status is not RunStatus.FAILED:
            raise ExecutionError(f"run {run_id} has already ended ({record.status.value})")
        graph = self._definitions.by_hash.get(record.graph_hash)
        if graph is None:
            graph = self._definitions.named(record.workflow)
            if not allow_changed_definition:
                started = await self.store.get_graph_spec(record.graph_hash) or {}
                changes = "; ".join(spec_changes(started, graph.stored_spec()))
                raise ExecutionError(
                    f"run {run_id} started under another definition of workflow "
                    f"{record.workflow!r} (graph {record.graph_hash[:12]}, now "
                    f"{graph.hash[:12]}: {changes or 'see the stored specs'}): resume it with "
                    "allow_changed_definition=True (flowstore resume "
                    "--allow-changed-definition) to run the new definition over its "
                    "committed results, or register the definition it started with"
                )
        if record.id in self._held:
            return await self.wait(run_id)  # executing here already
        if record.status is RunStatus.FAILED:  # its failed nodes run again, the rest stays
            claim = await self.store.reopen_run(
                RunId(run_id), self.worker_id, lease_seconds=self.lease_seconds
            )
        else:
            claim = await self._take(RunId(run_id))
        if claim is None:
            record = await self.store.get_run(RunId(run_id))
            if record.status.is_terminal:
                return self._run(record)
            if record.status is RunStatus.WAITING:  # not due yet: taken up here when it is
                return await self._until_ended(RunId(run_id), graph, observe)
            raise ExecutionError(
                f"run {run_id} is owned by live worker {record.lease_owner} until "
                f"{record.lease_expires_at}: it is running there"
            )
        return await self._drive(
            RunId(run_id), graph, None, observe, claim, lambda: self._take(RunId(run_id))
        )

    async def _drive(
        self,
        run_id: RunId,
        graph: Graph,
        inputs: Any,
        observe: Observer | None,
        attempt: Claim | NewRun | None,
        again: Callable[[], Awaitable[Claim | NewRun | None]],
    ) -> Run:
        """Execute `attempt`, and the run again here each time it waits and is due, until it
        ends. When the store is unavailable under it (a lock held elsewhere, a dropped
        connection, a server restarting), the run is released (`ownership.hold_run`) and
        taken up again with `again()` for up to `store_retry_seconds`; a worker that takes it
        meanwhile finishes it, and this waits for that."""
        loop = asyncio.get_running_loop()
        give_up, delay = loop.time() + self._store_retry_seconds, 0.05
        while True:
            try:
                if attempt is None:
                    attempt = await again()
                if attempt is not None:
                    await self._execute(attempt, graph, inputs, observe)
                return await self._until_ended(run_id, graph, observe)
            except StoreUnavailable as error:
                if loop.time() + delay > give_up:
                    raise
                _log.warning("run %s: %s; taking it up again in %.2g s", run_id, error, delay)
                await asyncio.sleep(delay)
                attempt, delay = None, min(delay * 2, 2.0)

    async def _take(self, run_id: RunId) -> Claim | None:
        """Claim a run that is not executing anywhere: queued, its lease expired or released,
        its owner dead, or its lease still held by this engine although it executes here no
        more (its release failed)."""
        steal_from = await self._dead_local_workers()
        if run_id not in self._held:
            steal_from.append(self.worker_id)
        return await self.store.claim_run(  # type: ignore[no-any-return]
            self.worker_id, lease_seconds=self.lease_seconds, run_id=run_id, steal_from=steal_from
        )

    async def _again(self, new: NewRun) -> Claim | NewRun | None:
        """Take up a run of `run` after the store failed under it: create it if its first
        commit never landed, claim it if it waits for an owner; None if it has ended or
        executes elsewhere."""
        assert new.id is not None
        try:
            record = await self.store.get_run(new.id)
        except RunNotFound:  # planned anew: its lease counts from now
            return self.store.plan_run(dataclasses.replace(new, created_at=None))  # type: ignore[no-any-return]
        if record.status.is_terminal:
            return None
        return await self._take(new.id)

    async def _until_ended(self, run_id: RunId, graph: Graph, observe: Observer | None) -> Run:
        """The run once it has ended. A run that waits (a sleep, a signal, or its turn in a
        queue) is taken up again here when it can be, unless another worker takes it first;
        then this waits for it."""
        while True:
            run = await self.get_run(run_id)
            if run.status not in _TAKEN_UP_HERE:
                return run if run.status.is_terminal else await self.wait(run_id)
            pause = self._poll_seconds
            if run.status is RunStatus.QUEUED:  # in a queue with no room for it yet
                pause = min(pause, _QUEUED_LOOK_SECONDS)
            if run.wake_at is not None:
                pause = min(pause, (run.wake_at - datetime.now(UTC)).total_seconds())
            await asyncio.sleep(max(pause, 0.0))
            claim = await self._take(run_id)
            if claim is not None:
                await self._execute(claim, graph, None, observe)
