"""SQL views over the telemetry tables, the same on SQLite and PostgreSQL.

Created by migration 0003; query them with any SQL tool. Percentiles are nearest-rank (the
value at rank ceil(p% of n)), computed with window functions both backends have.

- `flowstore_node_stats`: per workflow and node, executions that ended, success rate,
  p50/p95/mean duration in ms (from `flowstore_node_executions.duration_ms`), retries, cache
  lookups and cache hit rate (from `flowstore_metrics`).
- `flowstore_run_stats`: per workflow, runs by how they ended, success rate, p50/p95 run
  duration and mean queue wait in ms.
- `flowstore_error_stats`: per workflow, node, error type and outcome, how many and when last.
- `flowstore_trace`: every span of every run: the rows of `flowstore_spans` (runs, attempts),
  and each node execution as the span of its row (its parent the run's span).
- `flowstore_wait_stats` (migration 0006): per workflow, node, kind (`sleep`, `signal`) and
  signal name, the waits, how they ended (woke, signalled, timed out), p50/p95/mean/max time
  waited in ms (from `flowstore_waits`, over the waits that ended), those still open and
  since when the oldest of them waits.
- `flowstore_llm_usage` (migration 0011): per workflow, node and model, the calls to model
  endpoints (`llm` nodes, `NodeContext.record_model_call`), how they ended (ok, cached,
  failed), the prompt, completion and total tokens, the cost, and the mean latency and time
  to the first token (from `flowstore_llm_calls`).

Time spent waiting is in `flowstore_wait_stats` only: a node's duration is that of its last
execution, which starts when its run is taken up again; a run's duration in
`flowstore_run_stats` is wall time from its first start to its end, waits included.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    func,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateView
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from flowstore.store.schema import (
    PREFIX,
    error_reports,
    llm_calls,
    metrics,
    node_executions,
    runs,
    spans,
    waits,
)

__all__ = [
    "RUN_VIEWS",
    "TELEMETRY_VIEWS",
    "VIEWS",
    "error_stats",
    "llm_usage",
    "node_stats",
    "run_stats",
    "trace",
    "wait_stats",
]

_RUN_DURATIONS = ("run_succeeded_ms", "run_failed_ms", "run_cancelled_ms")


def _ranked(names: tuple[str, ...], timed: tuple[str, ...]) -> Any:
    """Metrics of `names` by workflow, each duration (`timed`) ranked among the durations."""
    m = metrics.c
    group = (m.workflow,)
    is_timed = case((m.name.in_(timed), 1), else_=0)
    condition: ColumnElement[bool] = m.name.in_(names)
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
    n = node_executions.c
    group = (runs.c.workflow, n.node)
    timed = (
        select(
            *group,
            n.status,
            n.duration_ms,
            func.row_number().over(partition_by=group, order_by=n.duration_ms).label("position"),
            func.count().over(partition_by=group).label("total"),
        )
        .select_from(node_executions.join(runs, runs.c.id == n.run_id))
        .where(n.status.in_(("succeeded", "failed")), n.duration_ms.is_not(None))
        .cte("timed")
    )
    t = timed.c

    def percentile(percent: int) -> ColumnElement[Any]:
        return func.min(case((t.position == (t.total * percent + 99) // 100, t.duration_ms)))

    executions = func.count()
    durations = (
        select(
            t.workflow,
            t.node,
            executions.label("executions"),
            (func.sum(case((t.status == "succeeded", 1), else_=0)) / executions).label(
                "success_rate"
            ),
            percentile(50).label("p50_ms"),
            percentile(95).label("p95_ms"),
            func.avg(t.duration_ms).label("mean_ms"),
        )
        .group_by(t.workflow, t.node)
        .subquery("durations")
    )
    m = metrics.c
    is_lookup = m.name == "cache_lookup"
    counters = (
        select(
            m.workflow,
            m.node,
            func.sum(case((m.name == "node_retry", 1), else_=0)).label("retries"),
            func.sum(case((is_lookup, 1), else_=0)).label("cache_lookups"),
            func.avg(case((is_lookup, m.value))).label("cache_hit_rate"),
        )
        .where(m.name.in_(("node_retry", "cache_lookup")), m.node.is_not(None))
        .group_by(m.workflow, m.node)
        .subquery("counters")
    )
    d, c = durations.c, counters.c
    return select(
        d.workflow,
        d.node,
        d.executions,
        d.success_rate,
        d.p50_ms,
        d.p95_ms,
        d.mean_ms,
        func.coalesce(c.retries, 0).label("retries"),
        func.coalesce(c.cache_lookups, 0).label("cache_lookups"),
        c.cache_hit_rate,
    ).select_from(durations.outerjoin(counters, and_(c.workflow == d.workflow, c.node == d.node)))


def _run_stats() -> Select[Any]:
    ranked = _ranked((*_RUN_DURATIONS, "queue_wait_ms"), _RUN_DURATIONS)
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


def _trace() -> Any:
    s, n = spans.c, node_executions.c
    compact = func.replace(n.run_id, "-", "")
    stored = select(
        s.span_id,
        s.trace_id,
        s.parent_span_id,
        s.name,
        s.run_id,
        s.node,
        s.exec_key,
        s.attempt,
        s.started_at,
        s.ended_at,
        s.status,
    )
    executions = select(
        n.span_id,
        func.substr(compact, 1, 32),
        func.substr(compact, 1, 16),
        literal("node ") + n.node,
        n.run_id,
        n.node,
        n.exec_key,
        n.attempt,
        n.started_at,
        n.finished_at,
        n.status,
    ).where(n.span_id.is_not(None), n.started_at.is_not(None))
    return union_all(stored, executions)


class _MillisBetween(FunctionElement[float]):
    """The milliseconds from one timestamp to another, on either backend."""

    type = Float()
    name = "millis_between"
    inherit_cache = True


@compiles(_MillisBetween, "sqlite")
def _millis_sqlite(element: _MillisBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((julianday({end}) - julianday({start})) * 86400000.0)"


@compiles(_MillisBetween, "postgresql")
def _millis_postgresql(element: _MillisBetween, compiler: SQLCompiler, **kw: Any) -> str:
    start, end = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(EXTRACT(EPOCH FROM ({end} - {start})) * 1000)"


def _wait_stats() -> Select[Any]:
    w = waits.c
    group = (runs.c.workflow, w.node, w.kind, w.name)
    ended = w.ended_at.is_not(None)
    waited = _MillisBetween(w.started_at, w.ended_at)
    measured = (
        select(
            *group,
            w.started_at,
            w.ended_at,
            w.outcome,
            case((ended, waited)).label("waited_ms"),
            # Ended waits rank first, by time waited; open ones after them.
            func.row_number()
            .over(partition_by=group, order_by=(case((ended, 0), else_=1), waited))
            .label("position"),
            func.sum(case((ended, 1), else_=0)).over(partition_by=group).label("total"),
        )
        .select_from(waits.join(runs, runs.c.id == w.run_id))
        .cte("measured")
    )
    m = measured.c

    def percentile(percent: int) -> ColumnElement[Any]:
        at_rank = and_(m.ended_at.is_not(None), m.position == (m.total * percent + 99) // 100)
        return func.min(case((at_rank, m.waited_ms)))

    def outcome(name: str) -> ColumnElement[Any]:
        return func.sum(case((m.outcome == name, 1), else_=0))

    still_open = m.ended_at.is_(None)
    return select(
        m.workflow,
        m.node,
        m.kind,
        m.name,
        func.count().label("waits"),
        outcome("woke").label("woke"),
        outcome("signalled").label("signalled"),
        outcome("timed_out").label("timed_out"),
        percentile(50).label("p50_ms"),
        percentile(95).label("p95_ms"),
        func.avg(m.waited_ms).label("mean_ms"),
        func.max(m.waited_ms).label("max_ms"),
        func.sum(case((still_open, 1), else_=0)).label("open"),
        func.min(case((still_open, m.started_at))).label("oldest_open_since"),
    ).group_by(m.workflow, m.node, m.kind, m.name)


def _llm_usage() -> Select[Any]:
    c = llm_calls.c

    def outcome(name: str) -> ColumnElement[Any]:
        return func.sum(case((c.outcome == name, 1), else_=0))

    return select(
        c.workflow,
        c.node,
        c.model,
        func.count().label("calls"),
        outcome("ok").label("ok"),
        outcome("cached").label("cached"),
        outcome("failed").label("failed"),
        func.coalesce(func.sum(c.prompt_tokens), 0).label("prompt_tokens"),
        func.coalesce(func.sum(c.completion_tokens), 0).label("completion_tokens"),
        func.coalesce(func.sum(c.total_tokens), 0).label("total_tokens"),
        func.sum(c.cost).label("cost"),
        func.avg(case((c.outcome != "cached", c.latency_ms))).label("mean_latency_ms"),
        func.avg(c.first_token_ms).label("mean_first_token_ms"),
        func.max(c.created_at).label("last_call_at"),
    ).group_by(c.workflow, c.node, c.model)


node_stats = CreateView(_node_stats(), f"{PREFIX}node_stats")
run_stats = CreateView(_run_stats(), f"{PREFIX}run_stats")
error_stats = CreateView(_error_stats(), f"{PREFIX}error_stats")
trace = CreateView(_trace(), f"{PREFIX}trace")
wait_stats = CreateView(_wait_stats(), f"{PREFIX}wait_stats")
llm_usage = CreateView(_llm_usage(), f"{PREFIX}llm_usage")

TELEMETRY_VIEWS = (node_stats, run_stats, error_stats, trace)
"""The views of migration 0003 (made again by 0005, which rebuilds the tables under them)."""

RUN_VIEWS = (*TELEMETRY_VIEWS, wait_stats)
"""The views over runs' tables as of migrations 0006 to 0010 (0008 makes them again)."""

VIEWS = (*RUN_VIEWS, llm_usage)
"""Every view, in the order to create them."""
