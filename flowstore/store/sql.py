"""`SQLStore`: the `Store` protocol over SQLAlchemy, for SQLite and PostgreSQL.

Each method names its transaction (a write or a read) and the repository function that runs
in it; the SQL itself lives in `repositories/`, written once as synchronous SQLAlchemy Core
functions of a `Connection`. How a transaction runs on each backend is `transactions.py`:

- On PostgreSQL, through the async engine (asyncpg) with `AsyncConnection.run_sync`, so the
  event loop never blocks.
- On SQLite, each transaction runs whole on a thread that owns a connection
  (`sqlite_threads.SQLiteThreads`): writes on one writer thread, each starting with
  `BEGIN IMMEDIATE` so writers in other processes queue on SQLite's lock instead of losing
  updates; reads on a few reader threads. The async engine (aiosqlite) checks and upgrades
  the schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from flowstore.logs import engine_logger
from flowstore.store import migrate, space
from flowstore.store.engine import (
    StoreSettings,
    create_engine,
    extend_wal,
    normalize_url,
)
from flowstore.store.protocol import Store
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
from flowstore.store.repositories import (
    breakers,
    cache,
    commits,
    memory,
    queues,
    retention,
    runs,
    schedules,
    signals,
    telemetry,
    transitions,
    waits,
)
from flowstore.store.schedule_records import Schedule, Tick
from flowstore.store.transactions import SQLTransactions

__all__ = ["SQLStore", "open_store"]

log = engine_logger("flowstore.store")


async def open_store(
    settings: StoreSettings | str | None = None,
    *,
    clock: Callable[[], datetime] | None = None,
) -> SQLStore:
    """Open the store at a URL (or with full settings), checking its schema revision.

    An embedded SQLite database is upgraded in place when it is behind; a PostgreSQL database
    is not (unless `auto_upgrade=True`): the error names the `flowstore db upgrade` command.
    """
    if settings is None:
        settings = StoreSettings()
    elif isinstance(settings, str):
        settings = StoreSettings(url=settings)
    engine = create_engine(settings)
    is_sqlite = engine.dialect.name == "sqlite"
    auto_upgrade = is_sqlite if settings.auto_upgrade is None else settings.auto_upgrade
    auto_upgrade = auto_upgrade and not settings.read_only
    url = normalize_url(settings.url).render_as_string(hide_password=True)
    try:
        await migrate.check_schema(engine, auto_upgrade=auto_upgrade, url=url)
    except BaseException:
        await engine.dispose()
        raise
    store = SQLStore(engine, settings, clock=clock)
    if is_sqlite:
        store.watch_file()
    return store


class SQLStore(SQLTransactions, Store):
    """The store over one SQLAlchemy async engine. Create it with `open_store`."""

    async def warm_up(self) -> None:
        """Get SQLite ready before the first run, not during it (an `Engine` calls this as it
        starts; a command that only reads never does): every connection open; the WAL file
        written out to its working size (`extend_wal`), when the disk has room to spare; and
        a run's usual commits rehearsed and rolled back on the writer thread
        (`commits.rehearse`), which compiles their statements. Both in writer transactions
        that never wait for SQLite's lock: when another process holds it, the first runs do
        that work instead. Nothing on PostgreSQL."""
        if self._writer is None:
            return
        try:
            await self._try_write("warming up", extend_wal)
        except Exception as error:  # only a warm-up
            log.debug("writing out the WAL failed: %s", error)
        await self.connected()
        with contextlib.suppress(Exception):  # commits.Rehearsed, or only a warm-up failed
            await self._try_write(
                "rehearsing a run's commits",
                commits.rehearse,
                now=self._now(),
                encode=self._encode,
            )

    # ---------------------------------------------------------------- runs and leases

    async def create_run(self, new: NewRun) -> RunRecord:
        return await self._write(
            f"creating a run of {new.workflow!r}",
            runs.create_run,
            new,
            now=self._now(),
            encode=self._encode,
        )

    def plan_run(self, new: NewRun) -> NewRun:
        return new.planned(self._now())

    async def get_graph_spec(self, graph_hash: str) -> Any:
        return await self._read(
            f"reading the definition {graph_hash[:12]}", runs.get_graph_spec, graph_hash
        )

    async def register_graphs(self, graphs: Sequence[StoredGraph]) -> None:
        await self._write(
            "storing workflow definitions",
            runs.register_graphs,
            graphs,
            now=self._now(),
            encode=self._encode,
        )

    async def list_graphs(self, workflow: str) -> list[StoredGraph]:
        return await self._read(
            f"reading the definitions of {workflow!r}", runs.list_graphs, workflow
        )

    async def get_run(self, run_id: RunId) -> RunRecord:
        return await self._read(f"reading run {run_id}", runs.get_run, run_id)

    async def list_runs(self, query: RunQuery | None = None) -> list[RunRecord]:
        return await self._read("listing runs", runs.list_runs, query or RunQuery())

    async def ended_runs(self, run_ids: Sequence[RunId]) -> list[RunId]:
        return await self._read("reading which runs ended", runs.ended_runs, run_ids)

    async def send_signal(
        self, run_id: RunId, name: str, payload: Any, *, idempotency_key: str | None = None
    ) -> Signal:
        return await self._write(
            f"sending signal {name!r} to run {run_id}",
            signals.send_signal,
            run_id,
            name,
            payload,
            idempotency_key=idempotency_key,
            now=self._now(),
            encode=self._encode,
        )

    async def list_signals(self, run_id: RunId) -> list[Signal]:
        return await self._read(
            f"reading the signals of run {run_id}", signals.list_signals, run_id
        )

    async def next_signal(self, run_id: RunId, name: str) -> Signal | None:
        return await self._read(
            f"reading the signals of run {run_id}", waits.next_signal, run_id, name
        )

    async def read_waits(self, run_id: RunId) -> list[Wait]:
        return await self._read(f"reading the waits of run {run_id}", waits.read_waits, run_id)

    async def find_run_ids(self, prefix: str, *, limit: int = 10) -> list[RunId]:
        return await self._read(
            f"finding runs {prefix!r}...", runs.find_run_ids, prefix, limit=limit
        )

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
        return await self._write(
            "claiming a run",
            runs.claim_run,
            owner,
            clock=self._now,
            lease_seconds=lease_seconds,
            workflows=workflows,
            graph_hashes=graph_hashes,
            run_id=run_id,
            steal_from=steal_from,
        )

    async def renew_lease(
        self, run_id: RunId, owner: WorkerId, fencing: int, *, lease_seconds: float
    ) -> datetime:
        return await self._write(
            f"renewing the lease of run {run_id}",
            runs.renew_lease,
            run_id,
            owner,
            fencing,
            now=self._now(),
            lease_seconds=lease_seconds,
        )

    async def release_lease(self, run_id: RunId, owner: WorkerId, fencing: int) -> bool:
        return await self._write(
            f"releasing the lease of run {run_id}", runs.release_lease, run_id, owner, fencing
        )

    async def next_wake_at(self, graph_hashes: Collection[str]) -> datetime | None:
        return await self._read(
            "reading when a waiting run is due", runs.next_wake_at, graph_hashes
        )

    async def reopen_run(
        self, run_id: RunId, owner: WorkerId, *, lease_seconds: float
    ) -> Claim | None:
        return await self._write(
            f"reopening run {run_id}",
            runs.reopen_run,
            run_id,
            owner,
            now=self._now(),
            lease_seconds=lease_seconds,
        )

    async def end_run(self, run_id: RunId, fencing: int, ending: RunChange) -> bool:
        return await self._write(
            f"ending run {run_id}",
            commits.end_run,
            run_id,
            fencing,
            ending,
            now=self._now(),
            encode=self._encode,
        )

    async def request_cancel(self, run_id: RunId) -> RunRecord:
        return await self._write(
            f"cancelling run {run_id}", runs.request_cancel, run_id, now=self._now()
        )

    async def cancel_requests(self, owner: WorkerId) -> frozenset[RunId]:
        return await self._read(f"reading cancel requests of {owner}", runs.cancel_requests, owner)

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
        action = f"recording transitions of run {run_id}"
        if create is not None:
            action = f"creating run {run_id} of {create.workflow!r}"
        alone = commits.is_one_statement(
            changes, metrics, spans, cache_keys, expected_seq=expected_seq, create=create
        )
        return await (self._write_alone if alone else self._write)(
            action,
            commits.record_commit,
            run_id,
            fencing,
            changes,
            metrics,
            spans,
            cache_keys,
            now=self._now(),
            encode=self._encode,
            expected_seq=expected_seq,
            create=create,
        )

    async def read_transitions(
        self, run_id: RunId, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Transition]:
        return await self._read(
            f"reading the transitions of run {run_id}",
            transitions.read_transitions,
            run_id,
            after_seq=after_seq,
            limit=limit,
        )

    async def read_events(self, run_id: RunId, name: str, *, node: str, key: str) -> list[Any]:
        return await self._read(
            f"reading the {name} events of run {run_id}",
            transitions.read_events,
            run_id,
            name,
            node=node,
            key=key,
        )

    async def read_node_executions(self, run_id: RunId) -> list[NodeExecution]:
        return await self._read(
            f"reading the node executions of run {run_id}", transitions.read_node_executions, run_id
        )

    async def read_outputs(
        self, run_id: RunId, *, at_seq: int | None = None, after_seq: int | None = None
    ) -> dict[tuple[str, str], Any]:
        return await self._read(
            f"reading the outputs of run {run_id}",
            transitions.read_outputs,
            run_id,
            at_seq=at_seq,
            after_seq=after_seq,
        )

    async def read_checkpoint(
        self, run_id: RunId, *, at_seq: int | None = None
    ) -> Checkpoint | None:
        return await self._read(
            f"reading the checkpoint of run {run_id}",
            transitions.read_checkpoint,
            run_id,
            at_seq=at_seq,
        )

    # ---------------------------------------------------------------- workers

    async def register_worker(self, worker: WorkerInfo) -> None:
        await self._write(f"registering worker {worker.id}", runs.register_worker, worker)

    async def heartbeat(
        self,
        worker: WorkerInfo,
        *,
        leases: Mapping[RunId, int],
        lease_seconds: float,
        forget_after: float = 3600.0,
    ) -> frozenset[RunId]:
        return await self._write(
            f"recording a heartbeat of worker {worker.id}",
            runs.heartbeat,
            worker,
            leases,
            now=self._now(),
            lease_seconds=lease_seconds,
            forget_after=forget_after,
        )

    async def list_workers(self, *, heartbeat_since: datetime | None = None) -> list[WorkerInfo]:
        return await self._read(
            "listing workers", runs.list_workers, heartbeat_since=heartbeat_since
        )

    async def remove_worker(self, worker_id: WorkerId) -> bool:
        return await self._write(f"removing worker {worker_id}", runs.remove_worker, worker_id)

    # ---------------------------------------------------------------- cache

    async def get_cached(self, key: str) -> CacheEntry | None:
        # On the path of every cached node: read here, not on a thread, when SQLite allows.
        return await self._read("reading the cache", cache.get_cached, key, now=self._now())

    async def put_cached(
        self, key: str, *, workflow: str, node: str, value: Any, ttl_seconds: float | None = None
    ) -> CacheEntry:
        return await self._write(
            f"caching the output of node {node!r}",
            cache.put_cached,
            key,
            workflow=workflow,
            node=node,
            value=value,
            ttl_seconds=ttl_seconds,
            now=self._now(),
            encode=self._encode,
        )

    async def clear_cache(
        self, *, workflow: str | None = None, node: str | None = None, expired_only: bool = False
    ) -> int:
        return await self._write(
            "clearing the cache",
            cache.clear_cache,
            workflow=workflow,
            node=node,
            expired_only=expired_only,
            now=self._now(),
        )

    # ---------------------------------------------------------------- memory

    async def append_messages(
        self,
        thread_id: str,
        messages: Sequence[NewMessage],
        *,
        ttl_seconds: float | None = None,
        keep_last: int | None = None,
    ) -> list[Message]:
        return await self._write(
            f"appending to thread {thread_id!r}",
            memory.append_messages,
            thread_id,
            messages,
            now=self._now(),
            encode=self._encode,
            ttl_seconds=ttl_seconds,
            keep_last=keep_last,
        )

    async def read_messages(
        self, thread_id: str, *, limit: int | None = None, before_id: int | None = None
    ) -> list[Message]:
        return await self._read(
            f"reading thread {thread_id!r}",
            memory.read_messages,
            thread_id,
            limit=limit,
            before_id=before_id,
            now=self._now(),
        )

    async def list_threads(self, *, limit: int = 100) -> list[tuple[str, int, datetime]]:
        return await self._read("listing threads", memory.list_threads, limit=limit)

    async def delete_thread(self, thread_id: str) -> int:
        return await self._write(f"deleting thread {thread_id!r}", memory.delete_thread, thread_id)

    async def upsert_entity(
        self,
        namespace: str,
        name: str,
        attributes: Mapping[str, Any],
        *,
        merge: bool = True,
        run_id: RunId | None = None,
    ) -> Entity:
        return await self._write(
            f"saving entity {namespace}/{name}",
            memory.upsert_entity,
            namespace,
            name,
            attributes,
            merge=merge,
            run_id=run_id,
            now=self._now(),
            encode=self._encode,
        )

    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        return await self._read(
            f"reading entity {namespace}/{name}", memory.get_entity, namespace, name
        )

    async def find_entities(
        self,
        namespace: str | None,
        *,
        where: Mapping[str, str | int | float | bool] | None = None,
        name_prefix: str | None = None,
        limit: int = 100,
    ) -> list[Entity]:
        return await self._read(
            f"finding entities in {namespace or 'every namespace'!r}",
            memory.find_entities,
            namespace,
            where=where,
            name_prefix=name_prefix,
            limit=limit,
        )

    async def entity_history(self, namespace: str, name: str) -> list[EntityVersion]:
        return await self._read(
            f"reading the history of entity {namespace}/{name}",
            memory.entity_history_of,
            namespace,
            name,
        )

    async def delete_entity(self, namespace: str, name: str) -> bool:
        return await self._write(
            f"deleting entity {namespace}/{name}", memory.delete_entity, namespace, name
        )

    # ---------------------------------------------------------------- telemetry

    async def record_errors(self, reports: Sequence[ErrorReport]) -> None:
        await self._write(
            "recording error reports",
            telemetry.record_errors,
            reports,
            now=self._now(),
            encode=self._encode,
        )

    async def list_errors(
        self, *, run_id: RunId | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[ErrorReport]:
        return await self._read(
            "listing error reports", telemetry.list_errors, run_id=run_id, since=since, limit=limit
        )

    async def record_metrics(self, points: Sequence[MetricPoint]) -> None:
        await self._write("recording metrics", telemetry.record_metrics, points, now=self._now())

    async def list_metrics(
        self, *, run_id: RunId | None = None, name: str | None = None, limit: int = 1000
    ) -> list[MetricPoint]:
        return await self._read(
            "listing metrics", telemetry.list_metrics, run_id=run_id, name=name, limit=limit
        )

    async def read_trace(self, run_id: RunId) -> list[Span]:
        return await self._read(f"reading the trace of run {run_id}", telemetry.read_trace, run_id)

    async def node_stats(self, *, workflow: str | None = None) -> list[NodeStats]:
        return await self._read("reading node statistics", telemetry.node_stats, workflow=workflow)

    # ---------------------------------------------------------------- queues

    async def set_queue(self, queue: Queue) -> None:
        await self._write(f"storing queue {queue.name!r}", queues.set_queue, queue, now=self._now())

    async def remove_queue(self, name: str) -> None:
        await self._write(f"removing queue {name!r}", queues.remove_queue, name)

    async def list_queues(self) -> list[Queue]:
        return await self._read("listing queues", queues.list_queues)

    async def queue_states(self) -> list[QueueState]:
        return await self._read("reading queues", queues.queue_states, now=self._now())

    # ---------------------------------------------------------------- schedules

    async def save_schedule(self, schedule: Schedule) -> None:
        await self._write(
            f"storing schedule {schedule.name!r}",
            schedules.save_schedule,
            schedule,
            now=self._now(),
            encode=self._encode,
        )

    async def get_schedule(self, name: str) -> Schedule:
        return await self._read(f"reading schedule {name!r}", schedules.get_schedule, name)

    async def list_schedules(self) -> list[Schedule]:
        return await self._read("listing schedules", schedules.list_schedules)

    async def pause_schedule(
        self, name: str, *, paused: bool, next_at: datetime | None = None
    ) -> Schedule:
        return await self._write(
            f"{'pausing' if paused else 'resuming'} schedule {name!r}",
            schedules.pause_schedule,
            name,
            paused=paused,
            now=self._now(),
            next_at=next_at,
        )

    async def remove_schedule(self, name: str) -> None:
        await self._write(f"removing schedule {name!r}", schedules.remove_schedule, name)

    async def due_schedules(self, workflows: Collection[str]) -> list[Schedule]:
        return await self._read(
            "reading due schedules", schedules.due_schedules, now=self._now(), workflows=workflows
        )

    async def next_schedule_at(self, workflows: Collection[str]) -> datetime | None:
        return await self._read("reading the next schedule", schedules.next_schedule_at, workflows)

    async def fire_schedule(
        self, schedule: Schedule, ticks: Sequence[Tick], *, next_at: datetime, skipped: int
    ) -> bool:
        return await self._write(
            f"starting ticks of schedule {schedule.name!r}",
            schedules.fire_schedule,
            schedule,
            ticks,
            next_at=next_at,
            skipped=skipped,
            now=self._now(),
            encode=self._encode,
        )

    async def list_ticks(self, name: str, *, limit: int = 20) -> list[tuple[datetime, str | None]]:
        return await self._read(
            f"reading ticks of schedule {name!r}", schedules.list_ticks, name, limit=limit
        )

    # ---------------------------------------------------------------- retention and space

    async def delete_ended_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Collection[RunStatus],
        limit: int,
        keep_stats: bool = False,
    ) -> int:
        deleted = await self._write_lazily(
            "deleting old runs",
            retention.delete_ended_runs,
            ended_before=ended_before,
            statuses=statuses,
            limit=limit,
            keep_stats=keep_stats,
        )
        await self._checkpoint()
        return deleted

    async def count_ended_runs(
        self, *, ended_before: datetime, statuses: Collection[RunStatus]
    ) -> int:
        return await self._read(
            "counting old runs",
            retention.count_ended_runs,
            ended_before=ended_before,
            statuses=statuses,
        )

    async def reclaim_space(self, *, pages: int) -> int:
        freed = await self._write_lazily("giving free pages back", space.reclaim, pages=pages)
        await self._checkpoint()
        return freed

    async def vacuum(self) -> None:
        await self._write("vacuuming the database", space.vacuum)

    async def space_use(self) -> SpaceUse:
        return await self._read("reading the database's size", space.space_use)

    async def run_stats(self, *, workflow: str | None = None) -> list[RunStats]:
        return await self._read("reading run statistics", telemetry.run_stats, workflow=workflow)

    async def wait_stats(self, *, workflow: str | None = None) -> list[WaitStats]:
        return await self._read("reading wait statistics", telemetry.wait_stats, workflow=workflow)

    async def record_spans(self, spans: Sequence[Span]) -> None:
        await self._write("recording spans", telemetry.record_spans, spans, encode=self._encode)

    async def list_spans(
        self, *, run_id: RunId | None = None, trace_id: str | None = None
    ) -> list[Span]:
        return await self._read(
            "listing spans", telemetry.list_spans, run_id=run_id, trace_id=trace_id
        )

    # ---------------------------------------------------------------- circuit breakers

    async def get_breaker(self, name: str) -> BreakerState | None:
        return await self._read(f"reading circuit breaker {name!r}", breakers.get_breaker, name)

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
        return await self._write(
            f"saving circuit breaker {name!r}",
            breakers.save_breaker,
            name,
            state=state,
            failure_count=failure_count,
            success_count=success_count,
            opened_at=opened_at,
            expected_version=expected_version,
            now=self._now(),
        )
