"""A run's commit: its transitions, the telemetry measured with them, and the cache lookups
of the nodes it starts, in one transaction (the hot path of every run)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from flowstore.store.notices import notify_run
from flowstore.store.records import Change, CommitResult, MetricPoint, RunId, Span
from flowstore.store.repositories import cache, telemetry, transitions

__all__ = ["record_commit"]


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
) -> CommitResult:
    """The transitions, the telemetry measured with them and the cache lookups of the nodes
    they start, in one transaction."""
    result = transitions.record_transitions(
        conn, run_id, fencing, changes, now=now, encode=encode, expected_seq=expected_seq
    )
    if changes and conn.dialect.name == "postgresql":
        notify_run(conn, run_id)  # readers in other processes wake when this commit lands
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
