"""The store protocol's parts for what nodes keep and what runs measure: the cache,
memory, telemetry and circuit breakers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from flowstore.store.protocol.runs import Connector
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

__all__ = ["BreakerStore", "CacheStore", "MemoryStore", "TelemetryStore"]


class CacheStore(Connector, Protocol):
    """Node outputs kept under cache keys."""

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


class MemoryStore(Connector, Protocol):
    """Conversation threads and entities, with their history."""

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


class TelemetryStore(Connector, Protocol):
    """Error reports, metrics and trace spans, and the stats views over runs."""

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

    async def run_stats(self, *, workflow: str | None = None) -> list[RunStats]:
        """The `flowstore_run_stats` view, optionally of one workflow."""
        ...

    async def wait_stats(self, *, workflow: str | None = None) -> list[WaitStats]:
        """The `flowstore_wait_stats` view (time waited), optionally of one workflow."""
        ...

    async def error_stats(self, *, workflow: str | None = None) -> list[ErrorStats]:
        """The `flowstore_error_stats` view (errors by type), optionally of one workflow."""
        ...

    async def llm_usage(self, *, workflow: str | None = None) -> list[LlmUsage]:
        """The `flowstore_llm_usage` view (model calls, tokens, cost), optionally of one
        workflow."""
        ...

    async def list_llm_calls(
        self, *, run_id: RunId | None = None, workflow: str | None = None, limit: int = 1000
    ) -> list[LlmCall]:
        """Model calls (`flowstore_llm_calls`) in the order made, of a run or a workflow."""
        ...

    async def record_spans(self, spans: Sequence[Span]) -> None:
        """Store trace spans (a span saved again replaces its row)."""
        ...

    async def list_spans(
        self, *, run_id: RunId | None = None, trace_id: str | None = None
    ) -> list[Span]:
        """Spans of a run or a trace, by start time."""
        ...


class BreakerStore(Connector, Protocol):
    """Circuit breakers' shared state."""

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
