"""Records of a run's history as stored: its log (`Transition`), node executions,
checkpoints and waits, and what a committed batch took (`CommitResult`).

Re-exported by `flowstore.store.records`; the same conventions hold (frozen, slotted
dataclasses with `from_row` constructors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowstore.store.records import NodeStatus, RunId, TransitionKind, from_columns
from flowstore.store.support_records import CacheEntry

__all__ = ["Checkpoint", "CommitResult", "NodeExecution", "Transition", "Wait"]


@dataclass(frozen=True, slots=True)
class Wait:
    """A wait of a node execution, as stored (`WaitChange` describes its fields)."""

    run_id: RunId
    node: str
    exec_key: str
    seq: int
    kind: str
    name: str | None
    started_at: datetime
    wake_at: datetime | None
    ended_at: datetime | None
    outcome: str | None
    signal_id: int | None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Wait:
        """Build a record from a row of the waits table."""
        return from_columns(cls, row)


@dataclass(frozen=True, slots=True)
class CommitResult:
    """What a committed batch took and found.

    Attributes:
        first_seq: The first sequence number the batch took.
        last_seq: The last one (inclusive).
        cached: The live cache entries of the keys looked up with the batch.
    """

    first_seq: int
    last_seq: int
    cached: Mapping[str, CacheEntry] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of the append-only transition log."""

    run_id: RunId
    seq: int
    kind: TransitionKind
    name: str | None
    node: str | None
    key: str
    status: str | None
    attempt: int | None
    payload: Any
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Transition:
        """Build a record from a row of the transitions table."""
        return from_columns(cls, row, kind=TransitionKind(row["kind"]), key=row["exec_key"])


@dataclass(frozen=True, slots=True)
class NodeExecution:
    """One execution of a node, as stored."""

    run_id: RunId
    node: str
    key: str
    status: NodeStatus
    attempt: int
    input: Any
    output: Any
    error: Any
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_seq: int
    duration_ms: float | None = None
    span_id: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> NodeExecution:
        """Build a record from a row of the node executions table."""
        return from_columns(cls, row, status=NodeStatus(row["status"]), key=row["exec_key"])


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Scheduler state stored at a sequence number of a run."""

    run_id: RunId
    seq: int
    state: Any
    created_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Checkpoint:
        """Build a record from a row of the checkpoints table."""
        return from_columns(cls, row)
