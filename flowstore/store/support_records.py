"""Records of the services around runs: cache entries, memory, telemetry, circuit breakers.

Re-exported by `flowstore.store.records`; the same conventions hold (frozen, slotted
dataclasses with `from_row` constructors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Final, TypeVar

from flowstore.store.records import RunId, from_columns

__all__ = [
    "BreakerState",
    "CacheEntry",
    "Entity",
    "EntityChange",
    "EntityVersion",
    "ErrorReport",
    "MEMORY_EVENTS",
    "MemoryChange",
    "MemoryClearChange",
    "MessageChange",
    "NodeStats",
    "RunStats",
    "WaitStats",
    "ErrorStats",
    "LlmCall",
    "LlmUsage",
    "SpaceUse",
    "Message",
    "MetricPoint",
    "NewMessage",
    "Span",
]


# --------------------------------------------------------------------------- cache


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """A cached node output.

    Attributes:
        key: The cache key (a digest of the node identity, its version and its inputs).
        workflow: The workflow of the node that produced the value.
        node: The node that produced the value.
        value: The cached output.
        created_at: When the value was stored.
        expires_at: When it stops being served; `None` never expires.
    """

    key: str
    workflow: str
    node: str
    value: Any
    created_at: datetime
    expires_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> CacheEntry:
        """Build a record from a row of the cache table."""
        return from_columns(cls, row)


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A conversation message to append to a thread."""

    role: str
    content: Any
    metadata: Any = None
    run_id: RunId | None = None
    node: str | None = None
    tokens: int | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A stored conversation message; `id` orders a thread."""

    id: int
    thread_id: str
    role: str
    content: Any
    metadata: Any
    run_id: RunId | None
    node: str | None
    tokens: int | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Message:
        """Build a record from a row of the messages table."""
        return from_columns(cls, row)


@dataclass(frozen=True, slots=True)
class Entity:
    """A named entity with attributes, in a namespace."""

    namespace: str
    name: str
    attributes: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Entity:
        """Build a record from a row of the entities table."""
        return from_columns(cls, row)


@dataclass(frozen=True, slots=True)
class EntityVersion:
    """One version of an entity's attributes, kept as its history."""

    namespace: str
    name: str
    version: int
    attributes: dict[str, Any]
    run_id: RunId | None
    changed_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> EntityVersion:
        """Build a record from a row of the entity history table."""
        return from_columns(cls, row)


@dataclass(frozen=True, slots=True)
class MessageChange:
    """Messages appended to a conversation thread by a node execution, committed with it.

    Logged as a `message` event; the messages go to the thread in the same transaction.

    Attributes:
        thread_id: The thread.
        messages: The messages, in order.
        node: The node that wrote them.
        key: The node execution's key.
        ttl_seconds: Seconds the messages are kept; None keeps them.
        keep_last: Trim the thread to its last this many messages afterwards.
    """

    thread_id: str
    messages: tuple[NewMessage, ...]
    node: str | None = None
    key: str = ""
    ttl_seconds: float | None = None
    keep_last: int | None = None

    def summary(self) -> dict[str, Any]:
        """What the log keeps of it (the messages themselves are in their thread)."""
        return {"thread": self.thread_id, "messages": len(self.messages)}


@dataclass(frozen=True, slots=True)
class EntityChange:
    """An entity created or changed by a node execution, committed with it.

    Logged as an `entity` event; the entity and its history change in the same transaction.

    Attributes:
        namespace: The entity's namespace.
        name: Its name.
        attributes: The attributes to set.
        merge: Lay them over the current attributes (else replace those).
        node: The node that wrote it.
        key: The node execution's key.
    """

    namespace: str
    name: str
    attributes: Mapping[str, Any]
    merge: bool = True
    node: str | None = None
    key: str = ""

    def summary(self) -> dict[str, Any]:
        """What the log keeps of it (the attributes are in the entity's history)."""
        return {"namespace": self.namespace, "name": self.name, "merge": self.merge}


@dataclass(frozen=True, slots=True)
class MemoryClearChange:
    """Delete the messages a run wrote (`MemoryConfig.clear_after_run`), at its end.

    Logged as a `memory_cleared` event.
    """

    run_id: RunId

    def summary(self) -> dict[str, Any]:
        """What the log keeps of it."""
        return {"run": str(self.run_id)}


MemoryChange = MessageChange | EntityChange | MemoryClearChange
"""A change of conversation or entity memory, made in the same transaction as the run's."""

MEMORY_EVENTS: Final[Mapping[type[Any], str]] = {
    MessageChange: "message",
    EntityChange: "entity",
    MemoryClearChange: "memory_cleared",
}
"""The name of the log event each kind of memory change is recorded as."""


# --------------------------------------------------------------------------- telemetry


@dataclass(frozen=True, slots=True)
class ErrorReport:
    """A failure and what happened next (`retried`, `fell_back`, `failed_run`, ...)."""

    run_id: RunId | None
    node: str | None
    error_type: str
    message: str
    traceback: str | None = None
    key: str = ""
    attempt: int | None = None
    outcome: str | None = None
    details: Any = None
    created_at: datetime | None = None
    id: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ErrorReport:
        """Build a record from a row of the error reports table."""
        return from_columns(cls, row, key=row["exec_key"])


@dataclass(frozen=True, slots=True)
class MetricPoint:
    """One measurement, such as a node's duration in milliseconds."""

    name: str
    value: float
    workflow: str | None = None
    node: str | None = None
    run_id: RunId | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    recorded_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> MetricPoint:
        """Build a record from a row of the metrics table."""
        return from_columns(cls, row, labels=row["labels"] or {})


@dataclass(frozen=True, slots=True)
class Span:
    """A trace span (a run, a node, an attempt) with its parent."""

    span_id: str
    trace_id: str
    name: str
    started_at: datetime
    parent_span_id: str | None = None
    run_id: RunId | None = None
    node: str | None = None
    key: str = ""
    attempt: int | None = None
    ended_at: datetime | None = None
    status: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Span:
        """Build a record from a row of the spans table."""
        return from_columns(cls, row, key=row["exec_key"], attributes=row["attributes"] or {})


@dataclass(frozen=True, slots=True)
class NodeStats:
    """A row of the `flowstore_node_stats` view: how one node of one workflow does."""

    workflow: str | None
    node: str
    executions: int
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    mean_ms: float | None
    retries: int
    cache_lookups: int
    cache_hit_rate: float | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> NodeStats:
        """Build a record from a row of the view (numbers as Python floats and ints)."""
        return _numbers(cls, row)


@dataclass(frozen=True, slots=True)
class RunStats:
    """A row of the `flowstore_run_stats` view: how the runs of one workflow end."""

    workflow: str | None
    runs: int
    succeeded: int
    failed: int
    cancelled: int
    success_rate: float | None
    p50_ms: float | None
    p95_ms: float | None
    mean_queue_wait_ms: float | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunStats:
        """Build a record from a row of the view (numbers as Python floats and ints)."""
        return _numbers(cls, row)


@dataclass(frozen=True, slots=True)
class WaitStats:
    """A row of the `flowstore_wait_stats` view: how long one node's waits of one kind (and
    signal name) last, over those that ended, and how many are open."""

    workflow: str | None
    node: str
    kind: str
    name: str | None
    waits: int
    woke: int
    signalled: int
    timed_out: int
    p50_ms: float | None
    p95_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    open: int
    oldest_open_since: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WaitStats:
        """Build a record from a row of the view (numbers as Python floats and ints)."""
        return _numbers(cls, row)


@dataclass(frozen=True, slots=True)
class ErrorStats:
    """A row of the `flowstore_error_stats` view: how many errors of one type one node of one
    workflow had, by how they ended (`outcome`), and when the last was."""

    workflow: str | None
    node: str | None
    error_type: str
    outcome: str | None
    errors: int
    last_seen: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ErrorStats:
        """Build a record from a row of the view (numbers as Python ints)."""
        return _numbers(cls, row)


@dataclass(frozen=True, slots=True)
class LlmCall:
    """A row of `flowstore_llm_calls`: one call to a model's chat endpoint (see
    `LlmCallChange` for the fields); `seq` is its `llm_call` event in the run's log."""

    id: int
    run_id: str | None
    seq: int
    workflow: str
    node: str
    exec_key: str
    attempt: int | None
    endpoint: str
    model: str
    outcome: str
    status_code: int | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cost: float | None
    latency_ms: float
    first_token_ms: float | None
    error: str | None
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> LlmCall:
        """Build a record from a row of the model calls table."""
        return from_columns(cls, row)


@dataclass(frozen=True, slots=True)
class LlmUsage:
    """A row of the `flowstore_llm_usage` view: the calls one node of one workflow made to one
    model, how they ended, the tokens they used, what they cost (None without a price), and
    their mean latency and time to the first token."""

    workflow: str
    node: str
    model: str
    calls: int
    ok: int
    cached: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost: float | None
    mean_latency_ms: float | None
    mean_first_token_ms: float | None
    last_call_at: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> LlmUsage:
        """Build a record from a row of the view (numbers as Python floats and ints)."""
        return _numbers(cls, row)


@dataclass(frozen=True, slots=True)
class SpaceUse:
    """How much of a SQLite file is used (all nought on PostgreSQL).

    Attributes:
        file_bytes: The file's size (without its WAL).
        free_bytes: Of which pages that hold nothing (freed by deletes).
        incremental: Whether the file gives freed pages back as it goes (`reclaim`).
    """

    file_bytes: int
    free_bytes: int
    incremental: bool


S = TypeVar("S", "ErrorStats", "LlmUsage", "NodeStats", "RunStats", "WaitStats")


def _numbers(cls: type[S], row: Mapping[Any, Any]) -> S:
    """A statistics record from a view row: counts as ints (0 for none), rates and times as
    floats (PostgreSQL gives NUMERIC, a Decimal, for a division; SQLite a float)."""
    values: dict[str, Any] = {}
    for column in fields(cls):
        value = row[column.name]
        if column.type == "int":
            value = int(value or 0)
        elif column.type == "float | None" and value is not None:
            value = float(value)
        values[column.name] = value
    return cls(**values)


# --------------------------------------------------------------------------- circuit breakers


@dataclass(frozen=True, slots=True)
class BreakerState:
    """The shared state of a circuit breaker for one named dependency.

    `version` grows on every save; a save names the version it read, so two workers that
    change the same breaker at once cannot overwrite each other.
    """

    name: str
    state: str
    failure_count: int
    success_count: int
    opened_at: datetime | None
    updated_at: datetime
    version: int

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> BreakerState:
        """Build a record from a row of the circuit breakers table."""
        return from_columns(cls, row)
