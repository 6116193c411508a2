"""A run's node executions on one time axis, with what happened to each: its attempts,
retries, a fallback, a cache hit, its waits.

Each bar spans an execution's start to its end (or to now, while it runs), placed on the
span from the run's first start to its end (or now). The marks come from the rows the
store keeps anyway: error reports (`retried`, `fell_back`), the `cache_lookup` metric and
the waits table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from flowstore.store.records import ErrorReport, MetricPoint, NodeExecution, Wait

__all__ = ["Bar", "timeline"]


@dataclass(slots=True)
class Bar:
    """One node execution on the axis: `left` and `width` in percent of it."""

    node: str
    key: str
    status: str
    attempt: int
    left: float
    width: float
    marks: list[str] = field(default_factory=list)


def timeline(
    started: datetime | None,
    finished: datetime | None,
    executions: Sequence[NodeExecution],
    errors: Sequence[ErrorReport],
    lookups: Sequence[MetricPoint],
    waits: Sequence[Wait],
) -> list[Bar]:
    """The bars of a run's executions, in the order they started."""
    now = datetime.now(UTC)
    begun = [e.started_at for e in executions if e.started_at is not None]
    start = started or min(begun, default=now)
    end = finished or now
    span = max((end - start).total_seconds(), 1e-3)
    retried: dict[tuple[str, str], int] = {}
    fell_back: set[tuple[str, str]] = set()
    for report in errors:
        place = (report.node or "", report.key)
        if report.outcome == "retried":
            retried[place] = retried.get(place, 0) + 1
        elif report.outcome == "fell_back":
            fell_back.add(place)
    hits = {point.node for point in lookups if point.value >= 1.0}
    waited: dict[tuple[str, str], list[Wait]] = {}
    for wait in waits:
        waited.setdefault((wait.node, wait.exec_key), []).append(wait)
    bars = []
    ordered = sorted(executions, key=lambda e: (e.started_at or now, e.updated_seq))
    for execution in ordered:
        place = (execution.node, execution.key)
        opened = execution.started_at or now
        closed = execution.finished_at or (now if execution.status.value == "running" else opened)
        left = max((opened - start).total_seconds(), 0.0) / span * 100
        width = max((closed - opened).total_seconds() / span * 100, 0.3)
        marks = []
        if place in retried:
            marks.append(f"retried {retried[place]}x")
        if place in fell_back:
            marks.append("fallback")
        if execution.node in hits:
            marks.append("cache hit")
        for wait in waited.get(place, []):
            what = "sleep" if wait.kind == "sleep" else f"signal {wait.name}"
            if wait.ended_at is None:
                marks.append(f"waits for {what}")
            else:
                seconds = (wait.ended_at - wait.started_at).total_seconds()
                marks.append(f"waited {seconds:.1f} s for {what}")
        bars.append(
            Bar(
                execution.node,
                execution.key,
                execution.status.value,
                execution.attempt,
                round(min(left, 99.7), 2),
                round(min(width, 100.0 - min(left, 99.7)), 2),
                marks,
            )
        )
    return bars
