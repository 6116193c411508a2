"""A run's commit: its transitions, the telemetry measured with them, and the cache lookups
of the nodes it starts, in one transaction (the hot path of every run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from flowstore.errors import LeaseLost, RunNotFound
from flowstore.store.records import (
    Change,
    CommitResult,
    EventChange,
    MetricPoint,
    NewRun,
    NodeChange,
    NodeStatus,
    RunChange,
    RunId,
    RunStatus,
    Span,
    WorkerId,
)
from flowstore.store.repositories import cache, history, runs, telemetry, transitions

__all__ = ["Rehearsed", "end_run", "is_one_statement", "record_commit", "rehearse"]


def record_commit(
    conn: Connection,
    run_id: RunId,
    fencing: int,
    changes: Sequence[Change],
    metrics: Sequence[MetricPoint],
    spans: Sequence[Span],
    cache_keys: Sequence[str],
    *,
    now: datetime,
    encode: Callable[..., Any],
    expected_seq: int | None = None,
    create: NewRun | None = None,
) -> CommitResult:
    """The transitions, the telemetry measured with them and the cache lookups of the nodes
    they start, in one transaction; with `create`, the run is created first, in it."""
    if create is not None:
        runs.create_run(conn, create, now=now, encode=encode)
    result = transitions.record_transitions(
        conn, run_id, fencing, changes, now=now, encode=encode, expected_seq=expected_seq
    )
    telemetry.record_metrics(conn, metrics, now=now)
    telemetry.record_spans(conn, spans, encode=encode)
    if not cache_keys:
        return result
    found = {}
    for key in dict.fromkeys(cache_keys):
        entry = cache.get_cached(conn, key, now=now)
        if entry is not None:
            found[key] = entry
    return CommitResult(result.first_seq, result.last_seq, found)


def is_one_statement(
    changes: Sequence[Change],
    metrics: Sequence[MetricPoint],
    spans: Sequence[Span],
    cache_keys: Sequence[str],
    *,
    expected_seq: int | None,
    create: NewRun | None,
) -> bool:
    """Whether `record_commit` writes this commit in one statement on PostgreSQL (most of a
    run's commits: nodes ending and starting, events): node and log rows only, numbered by
    the caller, with no run to create, no telemetry, no cache lookups, nothing else."""
    return (
        expected_seq is not None
        and bool(changes)
        and not (metrics or spans or cache_keys or create)
        and all(type(change) in _NODE_AND_LOG_ONLY for change in changes)
    )


_NODE_AND_LOG_ONLY = frozenset({NodeChange, EventChange})
"""The changes that write nothing besides a log row (and a node row)."""


def end_run(
    conn: Connection,
    run_id: RunId,
    fencing: int,
    ending: RunChange,
    *,
    now: datetime,
    encode: Callable[..., Any],
) -> bool:
    """End a run for an executor that stopped without ending it (cancelled, or broken): its
    node executions still in flight are recorded cancelled, then `ending`, fenced like any
    commit. False, with nothing written, when the run is not this writer's to end: it has
    ended, another worker owns it, or it was never created."""
    changes: list[Change] = [
        NodeChange(node, NodeStatus.CANCELLED, key=key)
        for node, key in history.in_flight(conn, run_id)
    ]
    changes.append(ending)
    try:
        transitions.record_transitions(conn, run_id, fencing, changes, now=now, encode=encode)
    except (LeaseLost, RunNotFound):
        return False
    return True


class Rehearsed(Exception):
    """Ends `rehearse`: its transaction rolls back."""


def rehearse(conn: Connection, *, now: datetime, encode: Callable[..., Any]) -> None:
    """A run's usual commits, in a transaction that then rolls back (it raises `Rehearsed`).

    Run once when a store opens, so that compiling the statements of the run path, about
    15 ms in all, does not land on the first run.
    """
    new = NewRun("flowstore-rehearsal", "0", "0", {}, owner=WorkerId("rehearsal"))
    run = runs.create_run(conn, new, now=now, encode=encode)
    metric = MetricPoint("node_ms", 1.0, "flowstore-rehearsal", "a", run.id)
    span = Span("0" * 16, "0" * 32, "run", now, run_id=run.id, ended_at=now, status="ok")
    batches: list[list[Change]] = [
        [NodeChange("a", NodeStatus.RUNNING, attempt=1, input={"x": 1}, span_id="0" * 16)],
        [
            NodeChange("a", NodeStatus.SUCCEEDED, output=1, duration_ms=1.0),
            EventChange("token", "x", "a", attempt=1),
            NodeChange("b", NodeStatus.RUNNING, attempt=1, input={"a": 1}),
        ],
        [NodeChange("b", NodeStatus.SUCCEEDED, output=2), RunChange(RunStatus.SUCCEEDED, 2)],
    ]
    seq = run.last_seq + 1
    for batch in batches:
        record_commit(
            conn,
            run.id,
            run.fencing,
            batch,
            [metric],
            [span] if batch is batches[-1] else [],
            ["k"],
            now=now,
            encode=encode,
            expected_seq=seq,
        )
        seq += len(batch)
    runs.get_run(conn, run.id)  # as a run is read back when it ends
    raise Rehearsed
