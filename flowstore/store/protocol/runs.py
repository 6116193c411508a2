"""The store protocol's parts for runs, their owners and their logs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from flowstore.store.records import (
    Change,
    Checkpoint,
    Claim,
    CommitResult,
    MetricPoint,
    NewRun,
    NodeExecution,
    RunChange,
    RunId,
    RunQuery,
    RunRecord,
    Signal,
    Span,
    StoredGraph,
    Transition,
    Wait,
    WorkerId,
    WorkerInfo,
)

__all__ = ["Connector", "RunLog", "RunStore", "WorkerStore"]


class Connector(Protocol):
    """What every store has: closing it, and the check that a value can be stored."""

    async def close(self) -> None:
        """Release every connection."""
        ...

    def encode(self, value: Any, *, what: str) -> Any:
        """Check that a value can be stored (JSON, within the size limits) and return it
        encoded, to pass in a later write instead of the value.

        Raises:
            UnserializableValue, ValueTooLarge: Naming `what` and the problem.
        """
        ...


class RunStore(Connector, Protocol):
    """Runs and their definitions: create, read and list runs, signal them and cancel them."""

    async def create_run(self, new: NewRun) -> RunRecord:
        """Create a run, queued or (with `new.owner`) owned at once, with its first transition."""
        ...

    def plan_run(self, new: NewRun) -> NewRun:
        """`new` with its id and creation time fixed (on this store's clock), so that its
        record (`NewRun.record`) is known before it is stored: an owner that executes a run
        at once creates it with its first commit (`record_transitions(create=...)`)."""
        ...

    async def get_graph_spec(self, graph_hash: str) -> Any:
        """The workflow spec stored for a graph hash (as JSON data), or None."""
        ...

    async def register_graphs(self, graphs: Sequence[StoredGraph]) -> None:
        """Store workflow definitions (each once per hash), so that runs of them can be
        submitted by name from processes without their code."""
        ...

    async def list_graphs(self, workflow: str) -> list[StoredGraph]:
        """The stored definitions of a workflow, newest first."""
        ...

    async def get_run(self, run_id: RunId) -> RunRecord:
        """Read one run. Raises `RunNotFound`."""
        ...

    async def list_runs(self, query: RunQuery | None = None) -> list[RunRecord]:
        """Runs matching the query (all runs when None), newest first."""
        ...

    async def ended_runs(self, run_ids: Sequence[RunId]) -> list[RunId]:
        """Which of `run_ids` have ended (in one query per few hundred ids)."""
        ...

    async def find_run_ids(self, prefix: str, *, limit: int = 10) -> list[RunId]:
        """The ids of runs that start with `prefix`, in order, at most `limit`."""
        ...

    async def send_signal(
        self, run_id: RunId, name: str, payload: Any, *, idempotency_key: str | None = None
    ) -> Signal:
        """Store a signal for a run until a wait consumes it (once per idempotency key: the
        signal stored first is returned); a waiting run becomes due at once.

        Raises:
            RunNotFound: No run has this id.
            RunEnded: The run has ended.
        """
        ...

    async def list_signals(self, run_id: RunId) -> list[Signal]:
        """A run's signals, in the order they were sent, consumed or not."""
        ...

    async def next_signal(self, run_id: RunId, name: str) -> Signal | None:
        """The oldest signal of that name sent to the run and not taken by a wait yet."""
        ...

    async def read_waits(self, run_id: RunId) -> list[Wait]:
        """A run's waits (`WaitChange` records them), begun and ended."""
        ...

    async def request_cancel(self, run_id: RunId) -> RunRecord:
        """Cancel a queued run now, or flag a running one for its owner to cancel. Raises
        `RunNotFound`."""
        ...


class WorkerStore(Connector, Protocol):
    """What worker processes do to own runs: claim them, hold and give back their
    leases, end the runs they leave, and keep their own rows alive."""

    async def claim_run(
        self,
        owner: WorkerId,
        *,
        lease_seconds: float,
        workflows: Collection[str] | None = None,
        graph_hashes: Collection[str] | None = None,
        run_id: RunId | None = None,
        steal_from: Collection[WorkerId] = (),
    ) -> Claim | None:
        """Claim the next queued run, or a running one whose lease is free, for `owner`.

        Args:
            owner: The claiming worker.
            lease_seconds: The lease length.
            workflows: Only runs of these workflows.
            graph_hashes: Only runs of these definitions (those the worker can execute).
            run_id: Only this run.
            steal_from: Workers known to be dead, whose unexpired leases may be taken.

        Returns:
            The claim with its new fencing number, or None when nothing is claimable.
        """
        ...

    async def next_wake_at(self, graph_hashes: Collection[str]) -> datetime | None:
        """When the first waiting run of these definitions is due (a sleep ends, a wait
        times out); None when no such run waits for a time."""
        ...

    async def renew_lease(
        self, run_id: RunId, owner: WorkerId, fencing: int, *, lease_seconds: float
    ) -> datetime:
        """Extend a lease; return its new expiry. Raises `LeaseLost`."""
        ...

    async def release_lease(self, run_id: RunId, owner: WorkerId, fencing: int) -> bool:
        """Give up a lease so any worker may claim the run now; False if it was already lost."""
        ...

    async def reopen_run(
        self, run_id: RunId, owner: WorkerId, *, lease_seconds: float
    ) -> Claim | None:
        """Take a failed run back to running, owned by `owner`; None if it is not failed."""
        ...

    async def requeue_failed_run(self, run_id: RunId) -> RunRecord | None:
        """Take a failed run back to queued, for any worker with its definition to continue
        from what it committed; None if it is not failed."""
        ...

    async def end_run(self, run_id: RunId, fencing: int, ending: RunChange) -> bool:
        """End a run whose executor stopped without ending it, with its node executions in
        flight recorded cancelled; False (nothing written) when it is not the caller's to
        end: ended already, owned by another worker, or never created."""
        ...

    async def cancel_requests(self, owner: WorkerId) -> frozenset[RunId]:
        """The runs `owner` executes that someone asked to cancel."""
        ...

    async def register_worker(self, worker: WorkerInfo) -> None:
        """Record a worker process (or refresh its row)."""
        ...

    async def heartbeat(
        self,
        worker: WorkerInfo,
        *,
        leases: Mapping[RunId, int],
        lease_seconds: float,
        forget_after: float = 3600.0,
    ) -> frozenset[RunId]:
        """Record a heartbeat and renew the leases named in `leases` (run id to fencing
        number) that the worker still owns; return those runs, and the runs named that do
        not exist yet (held while the commit that creates them is in flight). Rows of
        workers silent for `forget_after` seconds are deleted."""
        ...

    async def list_workers(self, *, heartbeat_since: datetime | None = None) -> list[WorkerInfo]:
        """Registered workers, optionally only those alive since a time."""
        ...

    async def remove_worker(self, worker_id: WorkerId) -> bool:
        """Forget a worker and release its leases."""
        ...


class RunLog(Connector, Protocol):
    """A run's transition log: the one write path of a run a worker owns
    (`record_transitions`), notices that a log grew, and the state read back from it."""

    async def record_transitions(
        self,
        run_id: RunId,
        fencing: int,
        changes: Sequence[Change],
        *,
        metrics: Sequence[MetricPoint] = (),
        spans: Sequence[Span] = (),
        cache_keys: Sequence[str] = (),
        expected_seq: int | None = None,
        create: NewRun | None = None,
    ) -> CommitResult:
        """Apply and log a batch of changes atomically, each with the next sequence number.

        `metrics` and `spans` measured while making the changes are stored in the same
        transaction (they take no place in the log). The live cache entries of `cache_keys`
        are looked up in it too, and returned in `CommitResult.cached`: the nodes a batch
        starts learn whether their output is cached without a second round trip. With
        `expected_seq`, the first change must take that sequence number (a writer that numbers
        its changes itself, to tell live readers). With `create` (a planned, owned run: see
        `plan_run`), the run is created first in the same transaction, as `create_run` would.

        Raises:
            LeaseLost: The fencing number is stale, or the log does not end at
                `expected_seq - 1`; nothing was written.
            UnserializableValue, ValueTooLarge: A value cannot be stored; nothing was written.
        """
        ...

    def watch(self, run_id: RunId, wake: asyncio.Event) -> AbstractAsyncContextManager[bool]:
        """Set `wake` whenever a commit of the run's log lands, from any process, for as long
        as the block runs. Yields whether it will; when not (SQLite), readers poll."""
        ...

    def watch_work(self, heard: Callable[[str], None]) -> AbstractAsyncContextManager[bool]:
        """Call `heard(graph_hash)` whenever a run of that definition becomes claimable (it
        was submitted, a signal made it due, its owner released it), from any process, for
        as long as the block runs; with an empty hash when notices may have been missed.
        Yields whether it will; when not (SQLite), workers poll."""
        ...

    async def read_transitions(
        self, run_id: RunId, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Transition]:
        """The run's log after a sequence number, in order."""
        ...

    async def read_events(self, run_id: RunId, name: str, *, node: str, key: str) -> list[Any]:
        """The payloads of the run's events named `name` of one node execution, in order."""
        ...

    async def read_node_executions(self, run_id: RunId) -> list[NodeExecution]:
        """Every execution of every node of the run."""
        ...

    async def read_outputs(
        self, run_id: RunId, *, at_seq: int | None = None, after_seq: int | None = None
    ) -> dict[tuple[str, str], Any]:
        """Outputs of succeeded node executions by (node, key), optionally as of a sequence
        (`at_seq`), or only those that succeeded after one (`after_seq`)."""
        ...

    async def read_checkpoint(
        self, run_id: RunId, *, at_seq: int | None = None
    ) -> Checkpoint | None:
        """The latest checkpoint, optionally as of a sequence number."""
        ...
