"""Retention: deleting runs that ended long ago, with everything that belongs to them.

A run's node executions, log, checkpoints, waits, signals, error reports, spans and metrics
go with it (their foreign keys cascade); messages and entity versions it wrote stay, no
longer tied to a run; runs it started stay, with no parent. Each call deletes one batch, in
one short transaction, so that running workflows are never kept waiting for long.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.engine import Connection

from flowstore.store.records import RunStatus
from flowstore.store.schema import llm_calls, metrics, runs

__all__ = ["count_ended_runs", "delete_ended_runs", "ended_runs_query"]


def _ended_before(ended_before: datetime, statuses: Collection[RunStatus]) -> list[Any]:
    return [
        runs.c.status.in_([status.value for status in statuses]),
        runs.c.finished_at < ended_before,
    ]


def delete_ended_runs(
    conn: Connection,
    *,
    ended_before: datetime,
    statuses: Collection[RunStatus],
    limit: int,
    keep_stats: bool,
) -> int:
    """Delete up to `limit` runs with one of `statuses` that ended before `ended_before`
    (the index on status and finished_at finds them); how many were deleted.

    With `keep_stats`, their metrics and model calls stay, tied to no run, so
    `flowstore_run_stats`, the cache and retry figures of `flowstore_node_stats` and
    `flowstore_llm_usage` still count them."""
    ids = [row.id for row in conn.execute(ended_runs_query(ended_before, statuses, limit))]
    if not ids:
        return 0
    if keep_stats:
        conn.execute(update(metrics).where(metrics.c.run_id.in_(ids)).values(run_id=None))
        conn.execute(update(llm_calls).where(llm_calls.c.run_id.in_(ids)).values(run_id=None))
    conn.execute(delete(runs).where(runs.c.id.in_(ids)))
    return len(ids)


def ended_runs_query(
    ended_before: datetime, statuses: Collection[RunStatus], limit: int
) -> Select[Any]:
    """The SELECT of the runs `delete_ended_runs` deletes: any of them (all ended before
    the time), in the order of the index on status and end, which reads no more of it than
    the batch."""
    return select(runs.c.id).where(*_ended_before(ended_before, statuses)).limit(limit)


def count_ended_runs(
    conn: Connection, *, ended_before: datetime, statuses: Collection[RunStatus]
) -> int:
    """How many runs `delete_ended_runs` would delete, in all."""
    stmt = select(runs.c.id).where(*_ended_before(ended_before, statuses)).subquery()
    return int(conn.execute(select(func.count()).select_from(stmt)).scalar_one())
