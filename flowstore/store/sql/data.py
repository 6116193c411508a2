"""`SQLStore`'s parts for what nodes keep and what runs measure: the cache, memory,
telemetry and circuit breakers (see `flowstore.store.sql`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from flowstore.store.protocol import BreakerStore, CacheStore, MemoryStore, TelemetryStore
from flowstore.store.records import (
    BreakerState,
    CacheEntry,
    Entity,
    EntityVersion,
    ErrorReport,
    ErrorStats,
    LlmCall,
    LlmUsage,
    Message,
    MetricPoint,
    NewMessage,
    NodeStats,
    RunId,
    RunStats,
    Span,
    WaitStats,
)
from flowstore.store.repositories import (
    breakers,
    cache,
    memory,
    telemetry,
)
from flowstore.store.transactions import SQLTransactions

__all__ = ["SQLBreakers", "SQLCache", "SQLMemory", "SQLTelemetry"]


class SQLCache(SQLTransactions, CacheStore):
    """`CacheStore` over SQL."""

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


class SQLMemory(SQLTransactions, MemoryStore):
    """`MemoryStore` over SQL."""

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

    async def list_threads(self, *, limit: int = 100) -> list[tuple[str, int, datetime]]:
        return await self._read("listing threads", memory.list_threads, limit=limit)

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


class SQLTelemetry(SQLTransactions, TelemetryStore):
    """`TelemetryStore` over SQL."""

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

    async def run_stats(self, *, workflow: str | None = None) -> list[RunStats]:
        return await self._read("reading run statistics", telemetry.run_stats, workflow=workflow)

    async def wait_stats(self, *, workflow: str | None = None) -> list[WaitStats]:
        return await self._read("reading wait statistics", telemetry.wait_stats, workflow=workflow)

    async def error_stats(self, *, workflow: str | None = None) -> list[ErrorStats]:
        return await self._read(
            "reading error statistics", telemetry.error_stats, workflow=workflow
        )

    async def llm_usage(self, *, workflow: str | None = None) -> list[LlmUsage]:
        return await self._read("reading model usage", telemetry.llm_usage, workflow=workflow)

    async def list_llm_calls(
        self, *, run_id: RunId | None = None, workflow: str | None = None, limit: int = 1000
    ) -> list[LlmCall]:
        return await self._read(
            "listing model calls",
            telemetry.list_llm_calls,
            run_id=run_id,
            workflow=workflow,
            limit=limit,
        )

    async def record_spans(self, spans: Sequence[Span]) -> None:
        await self._write("recording spans", telemetry.record_spans, spans, encode=self._encode)

    async def list_spans(
        self, *, run_id: RunId | None = None, trace_id: str | None = None
    ) -> list[Span]:
        return await self._read(
            "listing spans", telemetry.list_spans, run_id=run_id, trace_id=trace_id
        )


class SQLBreakers(SQLTransactions, BreakerStore):
    """`BreakerStore` over SQL."""

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
