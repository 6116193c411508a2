"""Records of the services around runs: cache entries, memory, telemetry, circuit breakers.

Re-exported by `flowstore.store.records`; the same conventions hold (frozen, slotted
dataclasses with `from_row` constructors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowstore.store.records import RunId

__all__ = [
    "BreakerState",
    "CacheEntry",
    "Entity",
    "EntityVersion",
    "ErrorReport",
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
        return cls(
            key=row["key"],
            workflow=row["workflow"],
            node=row["node"],
            value=row["value"],
            created_at=row["created_at"],
            expires_at=row["expires_at"],
        )


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
        return cls(
            id=row["id"],
            thread_id=row["thread_id"],
            role=row["role"],
            content=row["content"],
            metadata=row["metadata"],
            run_id=row["run_id"],
            node=row["node"],
            tokens=row["tokens"],
            created_at=row["created_at"],
        )


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
        return cls(
            namespace=row["namespace"],
            name=row["name"],
            attributes=row["attributes"],
            version=row["version"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


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
        return cls(
            namespace=row["namespace"],
            name=row["name"],
            version=row["version"],
            attributes=row["attributes"],
            run_id=row["run_id"],
            changed_at=row["changed_at"],
        )


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
        return cls(
            id=row["id"],
            run_id=row["run_id"],
            node=row["node"],
            key=row["exec_key"],
            attempt=row["attempt"],
            error_type=row["error_type"],
            message=row["message"],
            traceback=row["traceback"],
            outcome=row["outcome"],
            details=row["details"],
            created_at=row["created_at"],
        )


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
        return cls(
            name=row["name"],
            value=row["value"],
            workflow=row["workflow"],
            node=row["node"],
            run_id=row["run_id"],
            labels=row["labels"] or {},
            recorded_at=row["recorded_at"],
        )


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
        return cls(
            span_id=row["span_id"],
            trace_id=row["trace_id"],
            parent_span_id=row["parent_span_id"],
            name=row["name"],
            run_id=row["run_id"],
            node=row["node"],
            key=row["exec_key"],
            attempt=row["attempt"],
            started_at=row["started_at"],
            ended_at=row["ended_at"],
            status=row["status"],
            attributes=row["attributes"] or {},
        )


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
        return cls(
            name=row["name"],
            state=row["state"],
            failure_count=row["failure_count"],
            success_count=row["success_count"],
            opened_at=row["opened_at"],
            updated_at=row["updated_at"],
            version=row["version"],
        )
