"""The rows a batch of a run's changes writes besides the run row: log rows, each node
execution's net row, checkpoints, error reports, and the memory and wait changes to apply,
built in plain Python before any statement runs (`transitions.py` writes them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowstore.store.records import (
    MEMORY_EVENTS,
    UNSET,
    Change,
    EntityChange,
    ErrorChange,
    EventChange,
    LlmCallChange,
    MemoryChange,
    MemoryClearChange,
    MessageChange,
    NodeChange,
    NodeStatus,
    RunChange,
    RunId,
    TransitionKind,
    WaitChange,
)
from flowstore.store.repositories._common import Encoder

__all__ = ["NodeRow", "Rows", "build_rows", "node_values"]

_NODE, _RUN, _EVENT, _CHECKPOINT = (
    TransitionKind.NODE.value,
    TransitionKind.RUN.value,
    TransitionKind.EVENT.value,
    TransitionKind.CHECKPOINT.value,
)

_NODE_ENDED = frozenset(
    {NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED}
)


@dataclass(slots=True)
class NodeRow:
    """The net effect of a batch's changes on one node execution row."""

    node: str
    key: str
    status: str
    attempt: int
    input: Any
    output: Any
    error: Any
    started_at: datetime | None
    finished_at: datetime | None
    seq: int
    duration_ms: float | None = None
    span_id: str | None = None


@dataclass(slots=True)
class Rows:
    """What a batch of changes writes besides the run row."""

    # Lists in the order of their table's columns: a batch of hundreds is built without a
    # dict per row (see `_execute_rows`).
    log: list[list[Any]] = field(default_factory=list)
    nodes: dict[tuple[str, str], NodeRow] = field(default_factory=dict)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    memory: list[MemoryChange] = field(default_factory=list)
    waits: list[WaitChange] = field(default_factory=list)
    llm_calls: list[dict[str, Any]] = field(default_factory=list)


def build_rows(
    changes: Sequence[Change],
    first_seq: int,
    run_id: RunId,
    now: datetime,
    encode: Encoder,
    run_values: dict[str, Any],
) -> Rows:
    """The rows `changes` write, numbered from `first_seq`."""
    rows = Rows()
    log_rows = rows.log
    for seq, change in enumerate(changes, start=first_seq):
        if isinstance(change, NodeChange):
            error = _fold_node(rows.nodes, change, seq, run_id, now, encode)
            log_rows.append(
                [
                    run_id,
                    seq,
                    _NODE,
                    None,
                    change.node,
                    change.key,
                    change.status.value,
                    change.attempt,
                    error,
                    now,
                ]
            )
        elif isinstance(change, RunChange):
            error = run_values.get("error") if change.error is not UNSET else None
            status = change.status.value
            log_rows.append([run_id, seq, _RUN, None, None, "", status, None, error, now])
        elif isinstance(change, ErrorChange):
            summary = {
                "type": change.error_type,
                "message": change.message,
                "outcome": change.outcome,
            }
            log_rows.append(
                [
                    run_id,
                    seq,
                    _EVENT,
                    "error",
                    change.node,
                    change.key,
                    None,
                    change.attempt,
                    encode(summary, what=f"error of run {run_id}"),
                    now,
                ]
            )
            rows.errors.append(_error_row(run_id, change, now, encode))
        elif isinstance(change, EventChange):
            payload = encode(change.payload, what=_EventPayload(change.name))
            log_rows.append(
                [
                    run_id,
                    seq,
                    _EVENT,
                    change.name,
                    change.node,
                    change.key,
                    None,
                    change.attempt,
                    payload,
                    now,
                ]
            )
        elif isinstance(change, WaitChange):
            summary = encode(change.summary(), what="a wait")
            log_rows.append(
                [run_id, seq, _EVENT, "wait", change.node, change.key, None, None, summary, now]
            )
            rows.waits.append(change)
        elif isinstance(change, LlmCallChange):
            summary = encode(change.summary(), what="a model call")
            log_rows.append(
                [
                    run_id,
                    seq,
                    _EVENT,
                    "llm_call",
                    change.node,
                    change.key,
                    None,
                    change.attempt,
                    summary,
                    now,
                ]
            )
            rows.llm_calls.append(_llm_call_row(run_id, seq, change, now))
        elif isinstance(change, MessageChange | EntityChange | MemoryClearChange):
            summary = encode(change.summary(), what="a memory change")
            name = MEMORY_EVENTS[type(change)]
            node = None if isinstance(change, MemoryClearChange) else change.node
            key = "" if isinstance(change, MemoryClearChange) else change.key
            log_rows.append([run_id, seq, _EVENT, name, node, key, None, None, summary, now])
            rows.memory.append(change)
        else:
            state = encode(change.state, what=f"checkpoint of run {run_id}")
            log_rows.append([run_id, seq, _CHECKPOINT, None, None, "", None, None, None, now])
            rows.checkpoints.append(
                {"run_id": run_id, "seq": seq, "state": state, "created_at": now}
            )
    return rows


def _llm_call_row(run_id: RunId, seq: int, change: LlmCallChange, now: datetime) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "seq": seq,
        "workflow": change.workflow,
        "node": change.node,
        "exec_key": change.key,
        "attempt": change.attempt,
        "endpoint": change.endpoint,
        "model": change.model,
        "outcome": change.outcome,
        "status_code": change.status_code,
        "finish_reason": change.finish_reason,
        "prompt_tokens": change.prompt_tokens,
        "completion_tokens": change.completion_tokens,
        "total_tokens": change.total_tokens,
        "cost": change.cost,
        "latency_ms": change.latency_ms,
        "first_token_ms": change.first_token_ms,
        "error": change.error,
        "created_at": now,
    }


def _error_row(
    run_id: RunId, change: ErrorChange, now: datetime, encode: Encoder
) -> dict[str, Any]:
    details = change.details
    return {
        "run_id": run_id,
        "node": change.node,
        "exec_key": change.key,
        "attempt": change.attempt,
        "error_type": change.error_type,
        "message": change.message,
        "traceback": change.traceback,
        "outcome": change.outcome,
        "details": None
        if details is None
        else encode(details, what=f"details of an error in run {run_id}"),
        "created_at": now,
    }


def _fold_node(
    rows: dict[tuple[str, str], NodeRow],
    change: NodeChange,
    seq: int,
    run_id: RunId,
    now: datetime,
    encode: Encoder,
) -> Any:
    """Fold a node change into the batch's net row for that execution; return its error."""
    row = rows.get((change.node, change.key))
    if row is None:
        row = rows[(change.node, change.key)] = NodeRow(
            change.node, change.key, "", 0, None, None, None, None, None, seq
        )
    row.status = change.status.value
    row.seq = seq
    if change.attempt is not None:
        row.attempt = max(row.attempt, change.attempt)
    if change.input is not UNSET:
        row.input = encode(change.input, what=_Where(run_id, change, "input"))
    if change.output is not UNSET:
        row.output = encode(change.output, what=_Where(run_id, change, "output"))
    error = None
    if change.error is not UNSET:
        error = row.error = encode(change.error, what=_Where(run_id, change, "error"))
    if change.duration_ms is not None:
        row.duration_ms = change.duration_ms
    if change.span_id is not None:
        row.span_id = change.span_id
    if change.status is NodeStatus.RUNNING:
        row.started_at = now
    row.finished_at = now if change.status in _NODE_ENDED else None
    return error


@dataclass(frozen=True, slots=True)
class _Where:
    """Names a value of a node change in errors; formatted only when an error is raised."""

    run_id: RunId
    change: NodeChange
    field: str

    def __str__(self) -> str:
        key = f" [{self.change.key}]" if self.change.key else ""
        return f"{self.field} of node {self.change.node!r}{key} in run {self.run_id}"


@dataclass(frozen=True, slots=True)
class _EventPayload:
    """Names an event's payload in an error, formatted only then (tokens come by the
    hundred thousand)."""

    name: str

    def __str__(self) -> str:
        return f"payload of event {self.name!r}"


def node_values(run_id: RunId, row: NodeRow, now: datetime) -> list[Any]:
    """A node execution row's values in the order of its table's columns."""
    return [
        run_id,
        row.node,
        row.key,
        row.status,
        row.attempt,
        row.input,
        row.output,
        row.error,
        now,
        row.started_at,
        row.finished_at,
        row.seq,
        row.duration_ms,
        row.span_id,
    ]
