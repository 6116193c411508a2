"""Error reports, metrics and trace spans: plain rows that users query with SQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache

from sqlalchemy import Executable, bindparam, select
from sqlalchemy.engine import Connection

from flowstore.store import prepared, views
from flowstore.store.records import (
    ErrorReport,
    ErrorStats,
    LlmCall,
    LlmUsage,
    MetricPoint,
    NodeStats,
    RunId,
    RunStats,
    Span,
    WaitStats,
)
from flowstore.store.repositories._common import Encoder, upsert_for
from flowstore.store.schema import error_reports, llm_calls, metrics, spans

__all__ = [
    "list_errors",
    "list_llm_calls",
    "list_metrics",
    "list_spans",
    "llm_usage",
    "node_stats",
    "read_trace",
    "record_errors",
    "record_metrics",
    "record_spans",
    "run_stats",
    "wait_stats",
]


def record_errors(
    conn: Connection, reports: Sequence[ErrorReport], *, now: datetime, encode: Encoder
) -> None:
    """Store error reports."""
    if not reports:
        return
    conn.execute(
        error_reports.insert(),
        [
            {
                "run_id": report.run_id,
                "node": report.node,
                "exec_key": report.key,
                "attempt": report.attempt,
                "error_type": report.error_type,
                "message": report.message,
                "traceback": report.traceback,
                "outcome": report.outcome,
                "details": None
                if report.details is None
                else encode(report.details, what=f"details of error {report.error_type}"),
                "created_at": report.created_at or now,
            }
            for report in reports
        ],
    )


def list_errors(
    conn: Connection, *, run_id: RunId | None, since: datetime | None, limit: int
) -> list[ErrorReport]:
    """Error reports, oldest first, of one run or since a time."""
    stmt = select(error_reports).order_by(error_reports.c.id).limit(limit)
    if run_id is not None:
        stmt = stmt.where(error_reports.c.run_id == run_id)
    if since is not None:
        stmt = stmt.where(error_reports.c.created_at >= since)
    return [ErrorReport.from_row(row) for row in (conn.execute(stmt)).mappings()]


def record_metrics(conn: Connection, points: Sequence[MetricPoint], *, now: datetime) -> None:
    """Store measurements."""
    if not points:
        return
    # Telemetry rides along with a run's transitions: on SQLite, straight to the driver.
    prepared.execute_many(
        conn,
        _APPEND_METRICS,
        [
            {
                "name": point.name,
                "value": float(point.value),
                "workflow": point.workflow,
                "node": point.node,
                "run_id": point.run_id,
                "labels": dict(point.labels) or None,
                "recorded_at": point.recorded_at or now,
            }
            for point in points
        ],
    )


# Every column but the generated id, bound by name (a bare insert() would bind the id too).
_APPEND_METRICS = metrics.insert().values(
    {
        column.name: bindparam(column.name, type_=column.type)
        for column in metrics.c
        if column.name != "id"
    }
)


@cache
def _span_upsert(dialect: str) -> Executable:
    stmt = upsert_for(dialect, spans)
    upserted: Executable = stmt.on_conflict_do_update(
        index_elements=[spans.c.span_id],
        set_={
            name: stmt.excluded[name]
            for name in ("ended_at", "status", "attributes", "name", "attempt")
        },
    )
    return upserted


def read_trace(conn: Connection, run_id: RunId) -> list[Span]:
    """Every span of a run from the `flowstore_trace` view (stored and derived), by start."""
    view = views.trace.table
    stmt = select(view).where(view.c.run_id == run_id).order_by(view.c.started_at)
    return [
        Span(
            row["span_id"],
            row["trace_id"],
            row["name"],
            row["started_at"],
            parent_span_id=row["parent_span_id"],
            run_id=row["run_id"],
            node=row["node"],
            key=row["exec_key"],
            attempt=row["attempt"],
            ended_at=row["ended_at"],
            status=row["status"],
        )
        for row in conn.execute(stmt).mappings()
    ]


def node_stats(conn: Connection, *, workflow: str | None) -> list[NodeStats]:
    """Rows of the `flowstore_node_stats` view, by workflow and node."""
    view = views.node_stats.table
    stmt = select(view).order_by(view.c.workflow, view.c.node)
    if workflow is not None:
        stmt = stmt.where(view.c.workflow == workflow)
    return [NodeStats.from_row(row) for row in conn.execute(stmt).mappings()]


def run_stats(conn: Connection, *, workflow: str | None) -> list[RunStats]:
    """Rows of the `flowstore_run_stats` view, by workflow."""
    view = views.run_stats.table
    stmt = select(view).order_by(view.c.workflow)
    if workflow is not None:
        stmt = stmt.where(view.c.workflow == workflow)
    return [RunStats.from_row(row) for row in conn.execute(stmt).mappings()]


def wait_stats(conn: Connection, *, workflow: str | None) -> list[WaitStats]:
    """Rows of the `flowstore_wait_stats` view, by workflow, node, kind and signal."""
    view = views.wait_stats.table
    stmt = select(view).order_by(view.c.workflow, view.c.node, view.c.kind, view.c.name)
    if workflow is not None:
        stmt = stmt.where(view.c.workflow == workflow)
    return [WaitStats.from_row(row) for row in conn.execute(stmt).mappings()]


def error_stats(conn: Connection, *, workflow: str | None) -> list[ErrorStats]:
    """Rows of the `flowstore_error_stats` view, the most frequent first."""
    view = views.error_stats.table
    stmt = select(view).order_by(view.c.errors.desc(), view.c.workflow, view.c.node)
    if workflow is not None:
        stmt = stmt.where(view.c.workflow == workflow)
    return [ErrorStats.from_row(row) for row in conn.execute(stmt).mappings()]


def llm_usage(conn: Connection, *, workflow: str | None) -> list[LlmUsage]:
    """Rows of the `flowstore_llm_usage` view, by workflow, node and model."""
    view = views.llm_usage.table
    stmt = select(view).order_by(view.c.workflow, view.c.node, view.c.model)
    if workflow is not None:
        stmt = stmt.where(view.c.workflow == workflow)
    return [LlmUsage.from_row(row) for row in conn.execute(stmt).mappings()]


def list_llm_calls(
    conn: Connection, *, run_id: RunId | None, workflow: str | None, limit: int
) -> list[LlmCall]:
    """Model calls in the order made, of one run and/or one workflow."""
    stmt = select(llm_calls).order_by(llm_calls.c.id).limit(limit)
    if run_id is not None:
        stmt = stmt.where(llm_calls.c.run_id == run_id)
    if workflow is not None:
        stmt = stmt.where(llm_calls.c.workflow == workflow)
    return [LlmCall.from_row(row) for row in conn.execute(stmt).mappings()]


def list_metrics(
    conn: Connection, *, run_id: RunId | None, name: str | None, limit: int
) -> list[MetricPoint]:
    """Measurements in the order recorded, of one run and/or one name."""
    stmt = select(metrics).order_by(metrics.c.id).limit(limit)
    if run_id is not None:
        stmt = stmt.where(metrics.c.run_id == run_id)
    if name is not None:
        stmt = stmt.where(metrics.c.name == name)
    return [MetricPoint.from_row(row) for row in (conn.execute(stmt)).mappings()]


def record_spans(conn: Connection, items: Sequence[Span], *, encode: Encoder) -> None:
    """Store spans; a span written again (when it ends) replaces its earlier row."""
    if not items:
        return
    # Telemetry rides along with a run's transitions: on SQLite, straight to the driver.
    prepared.execute_many(
        conn,
        _span_upsert(conn.dialect.name),
        [
            {
                "span_id": span.span_id,
                "trace_id": span.trace_id,
                "parent_span_id": span.parent_span_id,
                "name": span.name,
                "run_id": span.run_id,
                "node": span.node,
                "exec_key": span.key,
                "attempt": span.attempt,
                "started_at": span.started_at,
                "ended_at": span.ended_at,
                "status": span.status,
                "attributes": encode(dict(span.attributes), what=f"attributes of span {span.name}")
                if span.attributes
                else None,
            }
            for span in items
        ],
    )


def list_spans(conn: Connection, *, run_id: RunId | None, trace_id: str | None) -> list[Span]:
    """Spans of a run or a trace, by start time."""
    stmt = select(spans).order_by(spans.c.started_at, spans.c.span_id)
    if run_id is not None:
        stmt = stmt.where(spans.c.run_id == run_id)
    if trace_id is not None:
        stmt = stmt.where(spans.c.trace_id == trace_id)
    return [Span.from_row(row) for row in (conn.execute(stmt)).mappings()]
