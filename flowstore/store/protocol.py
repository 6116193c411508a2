"""The `Store` protocol: every domain-level operation the runtime asks of the database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from flowstore.store.queue_records import Queue, QueueState
from flowstore.store.records import (
    BreakerState,
    CacheEntry,
    Change,
    Checkpoint,
    Claim,
    CommitResult,
    Entity,
    EntityVersion,
    ErrorReport,
    Message,
    MetricPoint,
    NewMessage,
    NewRun,
    NodeExecution,
    NodeStats,
    RunChange,
    RunId,
    RunQuery,
    RunRecord,
    RunStats,
    RunStatus,
    Signal,
    SpaceUse,
    Span,
    StoredGraph,
    Transition,
    Wait,
    WaitStats,
    WorkerId,
    WorkerInfo,
)
from flowstore.store.schedule_records import Schedule, Tick

__all__ = ["Store"]


class Store(Protocol):
    """Durable state of runs, memory, cache and telemetry.

    Every method is one transaction. Methods that write for a run that a worker owns take the
    worker's fencing number and refuse (`LeaseLost`) when it is stale, writing nothing.
    """

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

    # ---------------------------------------------------------------- runs and leases

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

    async def find_run_ids(self, prefix: str, *, limit: int = 10) -> list[RunId]:
        """The ids of runs that start with `prefix`, in order, at most `limit`."""
        ...

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

    async def end_run(self, run_id: RunId, fencing: int, ending: RunChange) -> bool:
        """End a run whose executor stopped without ending it, with its node executions in
        flight recorded cancelled; False (nothing written) when it is not the caller's to
        end: ended already, owned by another worker, or never created."""
        ...

    async def request_cancel(self, run_id: RunId) -> RunRecord:
        """Cancel a queued run now, or flag a running one for its owner to cancel. Raises
        `RunNotFound`."""
        ...

    async def cancel_requests(self, owner: WorkerId) -> frozenset[RunId]:
        """The runs `owner` executes that someone asked to cancel."""
        ...

    # ---------------------------------------------------------------- queues

    async def set_queue(self, queue: Queue) -> None:
        """Store a queue, or change the limits of the one of its name."""
        ...

    async def remove_queue(self, name: str) -> None:
        """Delete a queue no unended run is in. Raises `QueueNotFound`, or
        `IntegrityConflict` while runs in it have not ended."""
        ...

    async def list_queues(self) -> list[Queue]:
        """The stored queues, by name."""
        ...

    async def queue_states(self) -> list[QueueState]:
        """Each stored queue with its queued, running and waiting runs counted."""
        ...

    # ---------------------------------------------------------------- schedules

    async def save_schedule(self, schedule: Schedule) -> None:
        """Store a schedule, or replace the one of its name."""
        ...

    async def get_schedule(self, name: str) -> Schedule:
        """One schedule. Raises `ScheduleNotFound`."""
        ...

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...

    async def pause_schedule(
        self, name: str, *, paused: bool, next_at: datetime | None = None
    ) -> Schedule:
        """Pause a schedule, or let it run again from `next_at`. Raises `ScheduleNotFound`."""
        ...

    async def remove_schedule(self, name: str) -> None:
        """Delete a schedule (the runs it started stay). Raises `ScheduleNotFound`."""
        ...

    async def due_schedules(self, workflows: Collection[str]) -> list[Schedule]:
        """The schedules of these workflows, not paused, whose next tick has come."""
        ...

    async def next_schedule_at(self, workflows: Collection[str]) -> datetime | None:
        """When the first schedule of these workflows next ticks (paused ones aside)."""
        ...

    async def fire_schedule(
        self, schedule: Schedule, ticks: Sequence[Tick], *, next_at: datetime, skipped: int
    ) -> bool:
        """Create the runs of `ticks` and move the schedule on to `next_at`, in one
        transaction, unless another worker moved it since `schedule` was read (then nothing
        is written: False)."""
        ...

    async def list_ticks(self, name: str, *, limit: int = 20) -> list[tuple[datetime, str | None]]:
        """A schedule's latest ticks started, newest first, with their runs."""
        ...

    # ---------------------------------------------------------------- the transition log

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

    # ---------------------------------------------------------------- workers

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

    # ---------------------------------------------------------------- cache

    async def get_cached(self, key: str) -> CacheEntry | None:
        """A live cache entry, or None when missing or expired."""
        ...

    async def put_cached(
        self, key: str, *, workflow: str, node: str, value: Any, ttl_seconds: float | None = None
    ) -> CacheEntry:
        """Store a node output under a cache key."""
        ...

    async def clear_cache(
        self, *, workflow: str | None = None, node: str | None = None, expired_only: bool = False
    ) -> int:
        """Delete cache entries; return how many."""
        ...

    # ---------------------------------------------------------------- memory

    async def append_messages(
        self,
        thread_id: str,
        messages: Sequence[NewMessage],
        *,
        ttl_seconds: float | None = None,
        keep_last: int | None = None,
    ) -> list[Message]:
        """Append messages to a conversation thread (kept `ttl_seconds`, when given; the
        thread trimmed to its last `keep_last` messages, when given)."""
        ...

    async def list_threads(self, *, limit: int = 100) -> list[tuple[str, int, datetime]]:
        """Threads with their number of messages and the time of the last, latest first."""
        ...

    async def read_messages(
        self, thread_id: str, *, limit: int | None = None, before_id: int | None = None
    ) -> list[Message]:
        """A thread's messages in order (the latest `limit` of them)."""
        ...

    async def delete_thread(self, thread_id: str) -> int:
        """Delete a thread's messages; return how many."""
        ...

    async def upsert_entity(
        self,
        namespace: str,
        name: str,
        attributes: Mapping[str, Any],
        *,
        merge: bool = True,
        run_id: RunId | None = None,
    ) -> Entity:
        """Create or update an entity, keeping the previous version in its history."""
        ...

    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        """One entity, or None."""
        ...

    async def find_entities(
        self,
        namespace: str | None,
        *,
        where: Mapping[str, str | int | float | bool] | None = None,
        name_prefix: str | None = None,
        limit: int = 100,
    ) -> list[Entity]:
        """Entities whose attributes equal the given values, by namespace and name (in every
        namespace when `namespace` is None)."""
        ...

    async def entity_history(self, namespace: str, name: str) -> list[EntityVersion]:
        """Every version of an entity, oldest first."""
        ...

    async def delete_entity(self, namespace: str, name: str) -> bool:
        """Delete an entity and its history."""
        ...

    # ---------------------------------------------------------------- telemetry

    async def record_errors(self, reports: Sequence[ErrorReport]) -> None:
        """Store error reports."""
        ...

    async def list_errors(
        self, *, run_id: RunId | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[ErrorReport]:
        """Error reports, oldest first."""
        ...

    async def record_metrics(self, points: Sequence[MetricPoint]) -> None:
        """Store measurements."""
        ...

    async def list_metrics(
        self, *, run_id: RunId | None = None, name: str | None = None, limit: int = 1000
    ) -> list[MetricPoint]:
        """Measurements in the order recorded."""
        ...

    async def read_trace(self, run_id: RunId) -> list[Span]:
        """Every span of a run, the stored ones and each node execution's (`flowstore_trace`)."""
        ...

    async def node_stats(self, *, workflow: str | None = None) -> list[NodeStats]:
        """The `flowstore_node_stats` view, optionally of one workflow."""
        ...

    async def delete_ended_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Collection[RunStatus],
        limit: int,
        keep_stats: bool = False,
    ) -> int:
        """Delete up to `limit` runs with one of `statuses` (ended ones) that ended before
        `ended_before`, with everything that belongs to them, in one
        transaction; how many. With `keep_stats` their metrics stay, tied to no run."""
        ...

    async def count_ended_runs(
        self, *, ended_before: datetime, statuses: Collection[RunStatus]
    ) -> int:
        """How many runs `delete_ended_runs` would delete, in all."""
        ...

    async def reclaim_space(self, *, pages: int) -> int:
        """SQLite: give up to `pages` free pages back to the file system, in one short
        write; how many (0 on PostgreSQL, or for a file made without incremental
        auto-vacuum)."""
        ...

    async def space_use(self) -> SpaceUse:
        """How big the SQLite file is and how much of it is free (noughts on PostgreSQL)."""
        ...

    async def vacuum(self) -> None:
        """SQLite: rewrite the file without its free pages; writers wait meanwhile."""
        ...

    async def run_stats(self, *, workflow: str | None = None) -> list[RunStats]:
        """The `flowstore_run_stats` view, optionally of one workflow."""
        ...

    async def wait_stats(self, *, workflow: str | None = None) -> list[WaitStats]:
        """The `flowstore_wait_stats` view (time waited), optionally of one workflow."""
        ...

    async def record_spans(self, spans: Sequence[Span]) -> None:
        """Store trace spans (a span saved again replaces its row)."""
        ...

    async def list_spans(
        self, *, run_id: RunId | None = None, trace_id: str | None = None
    ) -> list[Span]:
        """Spans of a run or a trace, by start time."""
        ...

    # ---------------------------------------------------------------- circuit breakers

    async def get_breaker(self, name: str) -> BreakerState | None:
        """A circuit breaker's shared state, or None if never saved."""
        ...

    async def save_breaker(
        self,
        name: str,
        *,
        state: str,
        failure_count: int,
        success_count: int,
        opened_at: datetime | None,
        expected_version: int,
    ) -> BreakerState | None:
        """Save a breaker if nobody saved it since `expected_version`; None if someone did."""
        ...
