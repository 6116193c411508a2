"""`SQLStore`: the `Store` protocol over async SQLAlchemy, for SQLite and PostgreSQL.

It owns the engine and decides transactions; the SQL itself lives in `repositories/`.
On SQLite every write transaction starts with `BEGIN IMMEDIATE` and, inside one process, runs
on one dedicated connection behind an `asyncio.Lock`: SQLite has a single writer anyway, and
queueing in the process is much cheaper than contending for the file lock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any, Self

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowstore.store import migrate, serde
from flowstore.store.engine import (
    WRITE_OPTION,
    StoreSettings,
    create_engine,
    normalize_url,
    translate_errors,
)
from flowstore.store.protocol import Store
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
    RunId,
    RunQuery,
    RunRecord,
    Span,
    Transition,
    WorkerId,
    WorkerInfo,
)
from flowstore.store.repositories import (
    breakers,
    cache,
    memory,
    runs,
    telemetry,
    transitions,
)

__all__ = ["SQLStore", "open_store"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


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
    url = normalize_url(settings.url).render_as_string(hide_password=True)
    try:
        await migrate.check_schema(engine, auto_upgrade=auto_upgrade, url=url)
    except BaseException:
        await engine.dispose()
        raise
    return SQLStore(engine, settings, clock=clock)


class SQLStore(Store):
    """The store over one SQLAlchemy async engine. Create it with `open_store`."""

    def __init__(
        self,
        engine: AsyncEngine,
        settings: StoreSettings,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self._now = clock or _utcnow
        self._encode = partial(serde.encode, limits=settings.value_limits)
        self._serialize_writes = engine.dialect.name == "sqlite"
        self._write_lock = asyncio.Lock()
        self._writer: AsyncConnection | None = None

    @property
    def dialect(self) -> str:
        """The backend's name: `sqlite` or `postgresql`."""
        return str(self.engine.dialect.name)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        async with self._write_lock:
            if self._writer is not None:
                await self._writer.close()
                self._writer = None
        await self.engine.dispose()

    # ---------------------------------------------------------------- transactions

    @asynccontextmanager
    async def _write(self, action: str) -> AsyncIterator[AsyncConnection]:
        """A write transaction: BEGIN IMMEDIATE on SQLite, serialized inside the process."""
        async with translate_errors(action):
            if not self._serialize_writes:
                async with self.engine.begin() as conn:
                    yield conn
                return
            async with self._write_lock:
                conn = self._writer
                if conn is None or conn.closed or conn.invalidated:
                    conn = await self.engine.connect()
                    self._writer = conn = await conn.execution_options(**{WRITE_OPTION: True})
                async with conn.begin():
                    yield conn

    @asynccontextmanager
    async def _read(self, action: str) -> AsyncIterator[AsyncConnection]:
        """A read transaction (a consistent snapshot; it takes no write lock)."""
        async with translate_errors(action), self.engine.connect() as conn:
            yield conn

    # ---------------------------------------------------------------- runs and leases

    async def create_run(self, new: NewRun) -> RunRecord:
        async with self._write(f"creating a run of {new.workflow!r}") as conn:
            return await runs.create_run(conn, new, now=self._now(), encode=self._encode)

    async def get_run(self, run_id: RunId) -> RunRecord:
        async with self._read(f"reading run {run_id}") as conn:
            return await runs.get_run(conn, run_id)

    async def list_runs(self, query: RunQuery = RunQuery()) -> list[RunRecord]:
        async with self._read("listing runs") as conn:
            return await runs.list_runs(conn, query)

    async def claim_run(
        self,
        owner: WorkerId,
        *,
        lease_seconds: float,
        workflows: Collection[str] | None = None,
        run_id: RunId | None = None,
        steal_from: Collection[WorkerId] = (),
    ) -> Claim | None:
        async with self._write("claiming a run") as conn:
            return await runs.claim_run(
                conn,
                owner,
                now=self._now(),
                lease_seconds=lease_seconds,
                workflows=workflows,
                run_id=run_id,
                steal_from=steal_from,
            )

    async def renew_lease(
        self, run_id: RunId, owner: WorkerId, fencing: int, *, lease_seconds: float
    ) -> datetime:
        async with self._write(f"renewing the lease of run {run_id}") as conn:
            return await runs.renew_lease(
                conn, run_id, owner, fencing, now=self._now(), lease_seconds=lease_seconds
            )

    async def release_lease(self, run_id: RunId, owner: WorkerId, fencing: int) -> bool:
        async with self._write(f"releasing the lease of run {run_id}") as conn:
            return await runs.release_lease(conn, run_id, owner, fencing)

    # ---------------------------------------------------------------- the transition log

    async def record_transitions(
        self, run_id: RunId, fencing: int, changes: Sequence[Change]
    ) -> CommitResult:
        async with self._write(f"recording transitions of run {run_id}") as conn:
            return await transitions.record_transitions(
                conn, run_id, fencing, changes, now=self._now(), encode=self._encode
            )

    async def read_transitions(
        self, run_id: RunId, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Transition]:
        async with self._read(f"reading the transitions of run {run_id}") as conn:
            return await transitions.read_transitions(
                conn, run_id, after_seq=after_seq, limit=limit
            )

    async def read_node_executions(self, run_id: RunId) -> list[NodeExecution]:
        async with self._read(f"reading the node executions of run {run_id}") as conn:
            return await transitions.read_node_executions(conn, run_id)

    async def read_outputs(
        self, run_id: RunId, *, at_seq: int | None = None
    ) -> dict[tuple[str, str], Any]:
        async with self._read(f"reading the outputs of run {run_id}") as conn:
            return await transitions.read_outputs(conn, run_id, at_seq=at_seq)

    async def read_checkpoint(
        self, run_id: RunId, *, at_seq: int | None = None
    ) -> Checkpoint | None:
        async with self._read(f"reading the checkpoint of run {run_id}") as conn:
            return await transitions.read_checkpoint(conn, run_id, at_seq=at_seq)

    # ---------------------------------------------------------------- workers

    async def register_worker(self, worker: WorkerInfo) -> None:
        async with self._write(f"registering worker {worker.id}") as conn:
            await runs.register_worker(conn, worker)

    async def heartbeat(self, worker_id: WorkerId, *, lease_seconds: float) -> frozenset[RunId]:
        async with self._write(f"recording a heartbeat of worker {worker_id}") as conn:
            return await runs.heartbeat(
                conn, worker_id, now=self._now(), lease_seconds=lease_seconds
            )

    async def list_workers(self, *, heartbeat_since: datetime | None = None) -> list[WorkerInfo]:
        async with self._read("listing workers") as conn:
            return await runs.list_workers(conn, heartbeat_since=heartbeat_since)

    async def remove_worker(self, worker_id: WorkerId) -> bool:
        async with self._write(f"removing worker {worker_id}") as conn:
            return await runs.remove_worker(conn, worker_id)

    # ---------------------------------------------------------------- cache

    async def get_cached(self, key: str) -> CacheEntry | None:
        async with self._read("reading the cache") as conn:
            return await cache.get_cached(conn, key, now=self._now())

    async def put_cached(
        self, key: str, *, workflow: str, node: str, value: Any, ttl_seconds: float | None = None
    ) -> CacheEntry:
        async with self._write(f"caching the output of node {node!r}") as conn:
            return await cache.put_cached(
                conn,
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
        async with self._write("clearing the cache") as conn:
            return await cache.clear_cache(
                conn, workflow=workflow, node=node, expired_only=expired_only, now=self._now()
            )

    # ---------------------------------------------------------------- memory

    async def append_messages(
        self, thread_id: str, messages: Sequence[NewMessage]
    ) -> list[Message]:
        async with self._write(f"appending to thread {thread_id!r}") as conn:
            return await memory.append_messages(
                conn, thread_id, messages, now=self._now(), encode=self._encode
            )

    async def read_messages(
        self, thread_id: str, *, limit: int | None = None, before_id: int | None = None
    ) -> list[Message]:
        async with self._read(f"reading thread {thread_id!r}") as conn:
            return await memory.read_messages(conn, thread_id, limit=limit, before_id=before_id)

    async def delete_thread(self, thread_id: str) -> int:
        async with self._write(f"deleting thread {thread_id!r}") as conn:
            return await memory.delete_thread(conn, thread_id)

    async def upsert_entity(
        self,
        namespace: str,
        name: str,
        attributes: Mapping[str, Any],
        *,
        merge: bool = True,
        run_id: RunId | None = None,
    ) -> Entity:
        async with self._write(f"saving entity {namespace}/{name}") as conn:
            return await memory.upsert_entity(
                conn,
                namespace,
                name,
                attributes,
                merge=merge,
                run_id=run_id,
                now=self._now(),
                encode=self._encode,
            )

    async def get_entity(self, namespace: str, name: str) -> Entity | None:
        async with self._read(f"reading entity {namespace}/{name}") as conn:
            return await memory.get_entity(conn, namespace, name)

    async def find_entities(
        self,
        namespace: str,
        *,
        where: Mapping[str, str | int | float | bool] | None = None,
        name_prefix: str | None = None,
        limit: int = 100,
    ) -> list[Entity]:
        async with self._read(f"finding entities in {namespace!r}") as conn:
            return await memory.find_entities(
                conn, namespace, where=where, name_prefix=name_prefix, limit=limit
            )

    async def entity_history(self, namespace: str, name: str) -> list[EntityVersion]:
        async with self._read(f"reading the history of entity {namespace}/{name}") as conn:
            return await memory.entity_history_of(conn, namespace, name)

    async def delete_entity(self, namespace: str, name: str) -> bool:
        async with self._write(f"deleting entity {namespace}/{name}") as conn:
            return await memory.delete_entity(conn, namespace, name)

    # ---------------------------------------------------------------- telemetry

    async def record_errors(self, reports: Sequence[ErrorReport]) -> None:
        async with self._write("recording error reports") as conn:
            await telemetry.record_errors(conn, reports, now=self._now(), encode=self._encode)

    async def list_errors(
        self, *, run_id: RunId | None = None, since: datetime | None = None, limit: int = 100
    ) -> list[ErrorReport]:
        async with self._read("listing error reports") as conn:
            return await telemetry.list_errors(conn, run_id=run_id, since=since, limit=limit)

    async def record_metrics(self, points: Sequence[MetricPoint]) -> None:
        async with self._write("recording metrics") as conn:
            await telemetry.record_metrics(conn, points, now=self._now())

    async def list_metrics(
        self, *, run_id: RunId | None = None, name: str | None = None, limit: int = 1000
    ) -> list[MetricPoint]:
        async with self._read("listing metrics") as conn:
            return await telemetry.list_metrics(conn, run_id=run_id, name=name, limit=limit)

    async def record_spans(self, spans: Sequence[Span]) -> None:
        async with self._write("recording spans") as conn:
            await telemetry.record_spans(conn, spans, encode=self._encode)

    async def list_spans(
        self, *, run_id: RunId | None = None, trace_id: str | None = None
    ) -> list[Span]:
        async with self._read("listing spans") as conn:
            return await telemetry.list_spans(conn, run_id=run_id, trace_id=trace_id)

    # ---------------------------------------------------------------- circuit breakers

    async def get_breaker(self, name: str) -> BreakerState | None:
        async with self._read(f"reading circuit breaker {name!r}") as conn:
            return await breakers.get_breaker(conn, name)

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
        async with self._write(f"saving circuit breaker {name!r}") as conn:
            return await breakers.save_breaker(
                conn,
                name,
                state=state,
                failure_count=failure_count,
                success_count=success_count,
                opened_at=opened_at,
                expected_version=expected_version,
                now=self._now(),
            )
