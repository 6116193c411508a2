"""The database's own timeline of runs: when each ran, read from the run-status rows of the
transition log, and how many ran at once, for the queue tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from flowstore.store import RunStatus, TransitionKind
from flowstore.store.protocol import Store
from flowstore.store.records import RunRecord


@dataclass(frozen=True)
class Span:
    """A stretch of time a run was `running`, as its log says."""

    run_id: str
    key: str | None
    start: datetime
    end: datetime


async def running_spans(store: Store, runs: Iterable[RunRecord]) -> list[Span]:
    """Each stretch each run was `running`: from a run-status row `running` (a claim) to
    the next row that is not (`waiting` or an ending). A claim of a running run (taken over)
    continues the stretch."""
    spans = []
    for run in runs:
        start: datetime | None = None
        for row in await store.read_transitions(run.id):
            if row.kind is not TransitionKind.RUN:
                continue
            if row.status == RunStatus.RUNNING.value:
                start = start or row.created_at
            elif start is not None:
                spans.append(Span(run.id, run.queue_key, start, row.created_at))
                start = None
        assert start is None, f"run {run.id} never stopped running"
    return spans


def most_at_once(spans: Sequence[Span]) -> int:
    """The most spans open at one instant (one ending when another starts is not both)."""
    edges = sorted(
        [(span.start, 1) for span in spans] + [(span.end, -1) for span in spans],
        key=lambda edge: (edge[0], edge[1]),  # at a tie, the end comes first
    )
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def most_started_within(starts: Sequence[datetime], seconds: float) -> int:
    """The most starts in any window of `seconds` (a window opens at a start and excludes
    its end)."""
    ordered = sorted(starts)
    most = first = 0
    for last, moment in enumerate(ordered):
        while (moment - ordered[first]).total_seconds() >= seconds:
            first += 1
        most = max(most, last - first + 1)
    return most
