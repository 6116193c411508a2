"""SQL views over the telemetry tables, the same on SQLite and PostgreSQL.

Created by migration 0003; query them with any SQL tool. Percentiles are nearest-rank (the
value at rank ceil(p% of n)), computed with window functions both backends have.

- `flowstore_node_stats`: per workflow and node, executions, success rate, p50/p95/mean
  duration in ms, retries, cache lookups and cache hit rate.
- `flowstore_run_stats`: per workflow, runs by how they ended, success rate, p50/p95 run
  duration and mean queue wait in ms.
- `flowstore_error_stats`: per workflow, node, error type and outcome, how many and when last.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.schema import CreateView

from flowstore.store.schema import PREFIX, error_reports, metrics, runs

__all__ = ["VIEWS", "error_stats", "node_stats", "run_stats"]

_NODE_DURATIONS = ("node_succeeded_ms", "node_failed_ms")
_RUN_DURATIONS = ("run_succeeded_ms", "run_failed_ms", "run_cancelled_ms")


def _ranked(names: tuple[str, ...], timed: tuple[str, ...], *, by_node: bool) -> Any:
    """Metrics of `names`, each duration (`timed`) ranked among its group's durations."""
    m = metrics.c
    group = (m.workflow, m.node) if by_node else (m.workflow,)
    is_timed = case((m.name.in_(timed), 1), else_=0)
    condition: ColumnElement[bool] = m.name.in_(names)
    if by_node:
        condition = and_(condition, m.node.is_not(None))
    return (
        select(
            *group,
            m.name,
            m.value,
            is_timed.label("timed"),
            func.row_number()
            .over(partition_by=(*group, is_timed), order_by=m.value)
            .label("position"),
            func.count().over(partition_by=(*group, is_timed)).label("total"),
        )
        .where(condition)
        .cte("ranked")
    )


def _percentile(ranked: Any, percent: int) -> ColumnElement[Any]:
    r = ranked.c
    at_rank = and_(r.timed == 1, r.position == (r.total * percent + 99) // 100)
    return func.min(case((at_rank, r.value)))


def _count(ranked: Any, name: str) -> ColumnElement[Any]:
    return func.sum(case((ranked.c.name == name, 1), else_=0))


def _node_stats() -> Select[Any]:
    ranked = _ranked(
        (*_NODE_DURATIONS, "node_retry", "cache_lookup"), _NODE_DURATIONS, by_node=True
    )
    r = ranked.c
    executions = func.sum(r.timed)
    lookups = _count(ranked, "cache_lookup")
    return select(
        r.workflow,
        r.node,
        executions.label("executions"),
        (_count(ranked, "node_succeeded_ms") / func.nullif(executions, 0)).label("success_rate"),
        _percentile(ranked, 50).label("p50_ms"),
        _percentile(ranked, 95).label("p95_ms"),
        func.avg(case((r.timed == 1, r.value))).label("mean_ms"),
        _count(ranked, "node_retry").label("retries"),
        lookups.label("cache_lookups"),
        (
            func.sum(case((r.name == "cache_lookup", r.value), else_=0)) / func.nullif(lookups, 0)
        ).label("cache_hit_rate"),
    ).group_by(r.workflow, r.node)


def _run_stats() -> Select[Any]:
    ranked = _ranked((*_RUN_DURATIONS, "queue_wait_ms"), _RUN_DURATIONS, by_node=False)
    r = ranked.c
    ended = func.sum(r.timed)
    return select(
        r.workflow,
        ended.label("runs"),
        _count(ranked, "run_succeeded_ms").label("succeeded"),
        _count(ranked, "run_failed_ms").label("failed"),
        _count(ranked, "run_cancelled_ms").label("cancelled"),
        (_count(ranked, "run_succeeded_ms") / func.nullif(ended, 0)).label("success_rate"),
        _percentile(ranked, 50).label("p50_ms"),
        _percentile(ranked, 95).label("p95_ms"),
        func.avg(case((r.name == "queue_wait_ms", r.value))).label("mean_queue_wait_ms"),
    ).group_by(r.workflow)


def _error_stats() -> Select[Any]:
    e = error_reports.c
    return (
        select(
            runs.c.workflow,
            e.node,
            e.error_type,
            e.outcome,
            func.count().label("errors"),
            func.max(e.created_at).label("last_seen"),
        )
        .select_from(error_reports.outerjoin(runs, runs.c.id == e.run_id))
        .group_by(runs.c.workflow, e.node, e.error_type, e.outcome)
    )


node_stats = CreateView(_node_stats(), f"{PREFIX}node_stats")
run_stats = CreateView(_run_stats(), f"{PREFIX}run_stats")
error_stats = CreateView(_error_stats(), f"{PREFIX}error_stats")

VIEWS = (node_stats, run_stats, error_stats)
"""Every view, in the order to create them."""
