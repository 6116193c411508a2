"""The domain records the store reads and writes.

Records are frozen, slotted dataclasses: the write path builds thousands of them a second, and
they cross no trust boundary (user values inside them are validated by the runtime and encoded
to JSON by `flowstore.store.serde`). Each record read from the database has a `from_row`
constructor that takes a mapping of column names, so no SQLAlchemy type leaks out of the store.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any, Final, NewType, TypeVar

__all__ = [
    "UNSET",
    "BreakerState",
    "CacheEntry",
    "Change",
    "Checkpoint",
    "CheckpointChange",
    "Claim",
    "CommitResult",
    "Entity",
    "EntityVersion",
    "ErrorReport",
    "ErrorChange",
    "EventChange",
    "EntityChange",
    "LlmCall",
    "LlmCallChange",
    "LlmUsage",
    "MEMORY_EVENTS",
    "MemoryChange",
    "MemoryClearChange",
    "MessageChange",
    "Message",
    "MetricPoint",
    "NodeStats",
    "NewMessage",
    "NewRun",
    "NodeChange",
    "NodeExecution",
    "NodeStatus",
    "RunChange",
    "RunId",
    "RunQuery",
    "RunRecord",
    "RunStatus",
    "RunStats",
    "SpaceUse",
    "Span",
    "Signal",
    "StoredGraph",
    "Transition",
    "Wait",
    "WaitChange",
    "WaitStats",
    "ErrorStats",
    "TransitionKind",
    "WorkerId",
    "WorkerInfo",
]

RunId = NewType("RunId", str)
"""The id of a run: a UUID in its canonical text form."""

WorkerId = NewType("WorkerId", str)
"""The id of a worker, unique per process: `hostname:pid:random`."""


class _Unset(enum.Enum):
    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset.UNSET
"""Marks a field a change leaves as it is (distinct from `None`, a stored JSON null)."""


class RunStatus(enum.StrEnum):
    """Where a run is in its life. A run ends `succeeded`, `failed` or `cancelled`; a run
    that is `waiting` (for a time or a signal) holds no lease and no worker until it is due."""

    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the run has ended and will not be claimed again."""
        return self in _TERMINAL_RUN


_TERMINAL_RUN = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})


class NodeStatus(enum.StrEnum):
    """Where one execution of a node is in its life."""

    SCHEDULED = "scheduled"
    RUNNING = "running"
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    RECOVERED = "recovered"


class TransitionKind(enum.StrEnum):
    """What a row of the transition log records."""

    RUN = "run"
    NODE = "node"
    EVENT = "event"
    CHECKPOINT = "checkpoint"


R = TypeVar("R")


_COLUMNS: dict[type[Any], tuple[str, ...]] = {}


def from_columns(cls: type[R], row: Mapping[Any, Any], **converted: Any) -> R:
    """Build a record from a row; `converted` gives the fields that need more than a copy.

    A record's fields are named like its table's columns (a node execution's `key` is the
    column `exec_key`, passed in `converted`).
    """
    columns = _COLUMNS.get(cls)
    if columns is None:
        columns = _COLUMNS[cls] = tuple(f.name for f in fields(cls))  # type: ignore[arg-type]
    values = {name: row[name] for name in columns if name not in converted}
    return cls(**values, **converted)


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True, slots=True)
class NewRun:
    """A run to create.

    Attributes:
        workflow: The workflow's name.
        version: The workflow's declared version.
        graph_hash: The stable hash of the compiled graph the run executes.
        inputs: The workflow inputs (JSON-serializable).
        spec: The canonical spec of the graph, stored once per hash.
        id: The run id; a new UUID when not given.
        parent_run_id: The run that started this one as a subworkflow.
        priority: Higher runs are claimed first.
        owner: A worker that owns the run from creation (it runs it at once); `None` queues it.
        lease_seconds: The owner's lease length.
        created_at: When the run was made; the store's clock at creation when not given.
        queue: The queue it waits in for its turn (a queue stored with `Store.set_queue`).
        queue_key: Its key in that queue.
    """

    workflow: str
    version: str
    graph_hash: str
    inputs: Any
    spec: Any = None
    id: RunId | None = None
    parent_run_id: RunId | None = None
    priority: int = 0
    owner: WorkerId | None = None
    lease_seconds: float = 30.0
    created_at: datetime | None = None
    queue: str | None = None
    queue_key: str | None = None

    def planned(self, now: datetime) -> NewRun:
        """This run with its id (a new UUID unless given) and creation time (`now` unless
        given) fixed, so that its record is known before it is stored (`record`)."""
        if self.id is not None and self.created_at is not None:
            return self
        return replace(
            self,
            id=self.id or RunId(str(uuid.uuid4())),
            created_at=self.created_at or now,
        )

    def record(self) -> RunRecord:
        """The run as it is stored when created (a `planned` run): owned and running from
        its creation with fencing number 1, or queued."""
        if self.id is None or self.created_at is None:
            raise ValueError("a run's record is known once it is planned (NewRun.planned)")
        now, owned = self.created_at, self.owner is not None
        return RunRecord(
            id=self.id,
            workflow=self.workflow,
            version=self.version,
            graph_hash=self.graph_hash,
            status=RunStatus.RUNNING if owned else RunStatus.QUEUED,
            inputs=self.inputs,
            output=None,
            error=None,
            parent_run_id=self.parent_run_id,
            priority=self.priority,
            created_at=now,
            updated_at=now,
            started_at=now if owned else None,
            finished_at=None,
            last_seq=1,
            lease_owner=self.owner,
            lease_expires_at=now + timedelta(seconds=self.lease_seconds) if owned else None,
            fencing=1 if owned else 0,
            queue=self.queue,
            queue_key=self.queue_key,
        )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as stored.

    Attributes:
        id: The run id.
        workflow: The workflow's name.
        version: The workflow's declared version.
        graph_hash: The hash of the graph the run executes.
        status: The current status.
        inputs: The workflow inputs.
        output: The run's result, once it succeeded.
        error: The run's error, once it failed.
        parent_run_id: The parent run of a subworkflow run.
        priority: Claim priority (higher first).
        created_at: When the run was created.
        updated_at: When the run row last changed.
        started_at: When the run was first claimed.
        finished_at: When the run ended.
        last_seq: The sequence number of its latest transition.
        lease_owner: The worker that holds the lease, if any.
        lease_expires_at: When that lease expires.
        fencing: Grows on every claim; writes carry it and are refused when it is stale.
        cancel_requested_at: When cancellation was asked for, while the run was running.
        wake_at: A waiting run's earliest deadline: when its sleep ends or its wait for a
            signal times out, it can be claimed again.
        queue: The queue whose limits hold the run back (`flowstore_queues`), if any.
        queue_key: Its key in that queue (a per-key limit counts runs of one key).
    """

    id: RunId
    workflow: str
    version: str
    graph_hash: str
    status: RunStatus
    inputs: Any
    output: Any
    error: Any
    parent_run_id: RunId | None
    priority: int
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    last_seq: int
    lease_owner: WorkerId | None
    lease_expires_at: datetime | None
    fencing: int
    cancel_requested_at: datetime | None = None
    wake_at: datetime | None = None
    queue: str | None = None
    queue_key: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunRecord:
        """Build a record from a row of the runs table."""
        return from_columns(cls, row, status=RunStatus(row["status"]))


@dataclass(frozen=True, slots=True)
class Claim:
    """A run a worker now owns.

    Attributes:
        run: The run as it was when claimed.
        owner: The worker that owns it.
        fencing: The fencing number every write for this run must carry.
        lease_expires_at: When the lease runs out unless renewed.
    """

    run: RunRecord
    owner: WorkerId
    fencing: int
    lease_expires_at: datetime

    @property
    def resumes(self) -> bool:
        """Whether an executor may have written for the run before: False for a run its
        owner creates (nothing is logged yet) and for the first claim of a queued run
        (fencing number 1; its log holds its creation and this claim), whose state needs no
        reading back."""
        return self.run.last_seq > 1 and not (self.fencing == 1 and self.run.last_seq == 2)


@dataclass(frozen=True, slots=True)
class RunQuery:
    """Filters for listing runs, newest first.

    Attributes:
        workflow: Only runs of this workflow.
        statuses: Only runs in one of these statuses.
        created_after: Only runs created at or after this time.
        created_before: Only runs created before this time.
        parent_run_id: Only the child runs of this run.
        id_prefix: Only runs whose id starts with this text (`%` and `_` are no wildcards).
        listed_after: Only runs listed after this one, given as its (creation time, id):
            the next page of a listing that ended with it.
        limit: At most this many runs.
    """

    workflow: str | None = None
    statuses: frozenset[RunStatus] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    parent_run_id: RunId | None = None
    id_prefix: str | None = None
    listed_after: tuple[datetime, RunId] | None = None
    limit: int = 100


# --------------------------------------------------------------------------- the transition log


# The records of cache, memory, telemetry and breakers live in their own module; re-exported
# here so every record is imported from one place. Imported here: that module uses RunId.
# The rows of a run's log, its node executions, checkpoints and waits, likewise.
from flowstore.store.log_records import (  # noqa: E402
    Checkpoint,
    CommitResult,
    NodeExecution,
    Transition,
    Wait,
)
from flowstore.store.support_records import (  # noqa: E402
    MEMORY_EVENTS,
    BreakerState,
    CacheEntry,
    Entity,
    EntityChange,
    EntityVersion,
    ErrorReport,
    ErrorStats,
    LlmCall,
    LlmUsage,
    MemoryChange,
    MemoryClearChange,
    Message,
    MessageChange,
    MetricPoint,
    NewMessage,
    NodeStats,
    RunStats,
    SpaceUse,
    Span,
    WaitStats,
)

# --------------------------------------------------------------------------- workers


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process and its last heartbeat."""

    id: WorkerId
    hostname: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    metadata: Any = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> WorkerInfo:
        """Build a record from a row of the workers table."""
        return from_columns(cls, row)


@dataclass(frozen=True, slots=True)
class StoredGraph:
    """A workflow definition as stored, once per graph hash: what a run executes, and what
    a `Client` submits runs of by the workflow's name."""

    hash: str
    workflow: str
    version: str
    spec: Any = None
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> StoredGraph:
        """Build a record from a row of the graphs table."""
        return from_columns(cls, row)


@dataclass(frozen=True, slots=True)
class Signal:
    """A named payload sent to a run, kept until a wait of the run consumes it.

    Attributes:
        id: Its number, in the order signals were sent.
        run_id: The run it was sent to.
        name: What it is (`approval`, `payment_received`).
        payload: Its value (JSON).
        idempotency_key: Sending twice with one key stores it once.
        created_at: When it was sent.
        consumed_at: When a wait took it; None while it waits for one.
    """

    id: int
    run_id: RunId
    name: str
    payload: Any
    idempotency_key: str | None
    created_at: datetime
    consumed_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> Signal:
        """Build a record from a row of the signals table."""
        return from_columns(cls, row)


# A run's changes (what a commit writes) live in their own module; re-exported here so every
# record is imported from one place. Imported last: that module uses the records above.
from flowstore.store.changes import (  # noqa: E402
    Change,
    CheckpointChange,
    ErrorChange,
    EventChange,
    LlmCallChange,
    NodeChange,
    RunChange,
    WaitChange,
)
