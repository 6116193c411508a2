"""Metrics and trace spans of a run, measured by the executor and stored with its commits.

Every number is a row of `flowstore_metrics` and every span a row of `flowstore_spans`,
written in the same transaction as the transitions they describe. A node execution's duration
is a column of its own row (`flowstore_node_executions.duration_ms`), so the common case adds
one span row per node and no metric row. The SQL views in `store/views.py` aggregate them per
workflow and node.

Metric names (value, unit):

- `node_retry`: 1 per retry of a node.
- `cache_lookup`: 1 for a cache hit, 0 for a miss.
- `breaker_transition`: 1 per change of a circuit breaker (labels: breaker, from, to).
- `queue_wait_ms`: from a run's creation to its first start.
- `run_succeeded_ms`, `run_failed_ms`, `run_cancelled_ms`: from a run's first start to its end.

Spans: the run's, each node execution's (its parent the run's), and, for a node execution that
took more than one attempt (or every one, in debug mode), one per attempt (its parent the
node's). A node execution's span is its own row (`span_id`, `started_at`, `finished_at`), so it
costs no extra row; the view `flowstore_trace` shows every span of every run, stored or derived.
The trace id is the run id without dashes, and the run's span id its first 16 characters.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowstore.store.records import Claim, MetricPoint, RunStatus, Span

__all__ = ["AttemptSpan", "NodeTiming", "RunTelemetry"]


def trace_id(run_id: str) -> str:
    """The trace id of a run: its id without dashes (the view `flowstore_trace` agrees)."""
    return run_id.replace("-", "")[:32]


def new_span_id() -> str:
    """A random span id: 64 bits in hex, as OpenTelemetry's."""
    return _span_id()


def _now() -> datetime:
    return datetime.now(UTC)


def _span_id() -> str:
    # 64 random bits, as OpenTelemetry's span ids; unique enough, and no system call.
    return f"{random.getrandbits(64):016x}"


@dataclass(slots=True)
class AttemptSpan:
    """One attempt of a node execution, as it is measured."""

    attempt: int
    started_at: datetime
    span_id: str = field(default_factory=_span_id)
    ended_at: datetime | None = None
    status: str | None = None


@dataclass(slots=True)
class NodeTiming:
    """One node execution, as it is measured."""

    node: str
    key: str
    started_at: datetime
    started: float
    span_id: str = field(default_factory=_span_id)
    attempts: list[AttemptSpan] = field(default_factory=list)

    def took_ms(self) -> float:
        """Milliseconds since the execution started."""
        return (time.perf_counter() - self.started) * 1000

    def attempt_starts(self, attempt: int, at: datetime | None = None) -> None:
        """An attempt starts (the previous one, if any, has ended)."""
        self.attempts.append(AttemptSpan(attempt, at or _now()))

    def attempt_ends(self, status: str, at: datetime | None = None) -> None:
        """The current attempt ended: `succeeded`, `failed`, `timed_out`, ..."""
        if self.attempts and self.attempts[-1].ended_at is None:
            self.attempts[-1].ended_at = at or _now()
            self.attempts[-1].status = status


class RunTelemetry:
    """Measures one execution of a run; does nothing when disabled."""

    def __init__(
        self,
        claim: Claim,
        workflow: str,
        *,
        enabled: bool,
        every_attempt: bool = False,
        tracer: Any = None,
    ) -> None:
        self.enabled = enabled
        self._every_attempt = every_attempt
        self._tracer = tracer if enabled else None
        self._spans: list[Span] = []  # kept for OpenTelemetry, when there is a tracer
        self._run = claim.run
        self._workflow = workflow
        self._trace_id = trace_id(claim.run.id)
        self._span_id = self._trace_id[:16]
        self._started_at = _now()

    def run_starts(self) -> list[MetricPoint]:
        """The queue wait, when this is the run's first start: its first claim (fencing
        number 1), from its creation to that claim; nought for a run created by its owner."""
        if not self.enabled or self._run.fencing != 1:
            return []
        started = self._run.started_at or self._started_at
        waited = (started - self._run.created_at).total_seconds() * 1000
        return [self._metric("queue_wait_ms", max(waited, 0.0))]

    def node_starts(self, node: str, key: str, attempt: int, span_id: str) -> NodeTiming:
        """Start measuring a node execution, whose row carries `span_id`."""
        now = _now()
        timing = NodeTiming(node, key, now, time.perf_counter(), span_id)
        timing.attempt_starts(attempt, now)
        return timing

    def node_ends(
        self, timing: NodeTiming, status: str, *, cache_hit: bool | None = None
    ) -> tuple[list[MetricPoint], list[Span]]:
        """The metrics and spans of a node execution that ended with `status`."""
        if not self.enabled:
            return [], []
        ended = _now()
        timing.attempt_ends(status, ended)
        metrics = []
        if cache_hit is not None:
            metrics.append(self._metric("cache_lookup", float(cache_hit), node=timing.node))
        # The node's own span is its execution row; it is built for OpenTelemetry only.
        if self._tracer is not None:
            self._spans.append(
                Span(
                    timing.span_id,
                    self._trace_id,
                    f"node {timing.node}",
                    timing.started_at,
                    parent_span_id=self._span_id,
                    run_id=self._run.id,
                    node=timing.node,
                    key=timing.key,
                    ended_at=ended,
                    status=status,
                )
            )
        if len(timing.attempts) < 2 and not self._every_attempt:
            return metrics, []  # the node's span is its only attempt's
        spans = [
            Span(
                attempt.span_id,
                self._trace_id,
                f"attempt {attempt.attempt}",
                attempt.started_at,
                parent_span_id=timing.span_id,
                run_id=self._run.id,
                node=timing.node,
                key=timing.key,
                attempt=attempt.attempt,
                ended_at=attempt.ended_at or ended,
                status=attempt.status or status,
            )
            for attempt in timing.attempts
        ]
        return metrics, self._kept(spans)

    def event(self, name: str, node: str | None, **labels: str) -> list[MetricPoint]:
        """A count of 1 of something that happened (a retry, a breaker transition)."""
        return [self._metric(name, 1.0, node=node, **labels)] if self.enabled else []

    def run_ends(self, status: RunStatus) -> tuple[list[MetricPoint], list[Span]]:
        """The metrics and span of the run's end."""
        if not self.enabled:
            return [], []
        ended = _now()
        first_start = self._run.started_at or self._started_at
        took = max((ended - first_start).total_seconds() * 1000, 0.0)
        span = Span(
            self._span_id,
            self._trace_id,
            f"run {self._workflow}",
            self._started_at,
            run_id=self._run.id,
            ended_at=ended,
            status=status.value,
            attributes={"fencing": self._run.fencing},
        )
        return [self._metric(f"run_{status.value}_ms", took)], self._kept([span])

    def export(self) -> None:
        """Replay the run's spans through the OpenTelemetry tracer, if there is one."""
        if self._tracer is not None and self._spans:
            from flowstore.runtime import otel

            otel.export(self._tracer, self._spans)
        self._spans = []

    def _kept(self, spans: list[Span]) -> list[Span]:
        if self._tracer is not None:
            self._spans.extend(spans)
        return spans

    def _metric(
        self, name: str, value: float, node: str | None = None, **labels: Any
    ) -> MetricPoint:
        return MetricPoint(
            name, value, workflow=self._workflow, node=node, run_id=self._run.id, labels=labels
        )
