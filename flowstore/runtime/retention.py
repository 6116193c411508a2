"""Retention: old runs deleted in small batches, from `flowstore gc` or in the background of
an engine (`Engine(retention=Retention(...))`).

Each batch is one short transaction (on SQLite, one hold of the write lock), its size
adapts so that a batch takes about `batch_seconds`, and a rest three times as long follows
it: running workflows, in this process or another, commit between batches, and wait for one
batch at most. A run is deleted with everything that belongs to it (see
`flowstore.store.repositories.retention`). On SQLite, the pages freed go back to the file
system once the batches are done, in steps as short, when the database was created with
incremental auto-vacuum (every database flowstore creates is); an older file gives them back
with `flowstore gc --vacuum`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from flowstore.errors import ConfigurationError
from flowstore.logs import engine_logger
from flowstore.store.protocol import RetentionStore
from flowstore.store.records import RunStatus

__all__ = ["ENDED", "Retention", "Sweep", "delete_old_runs", "keep_deleting"]

log = engine_logger("flowstore.retention")

ENDED = frozenset(status for status in RunStatus if status.is_terminal)
"""The statuses of runs that have ended: the only runs retention deletes."""

_REST = 3.0  # the rest after each step, in steps' durations
_FIRST_BATCH = 50
_LARGEST_BATCH = 5_000
_FIRST_RECLAIM = 32  # SQLite pages given back in the first step (128 KiB of 4 KiB pages)
_LARGEST_RECLAIM = 512


@dataclass(frozen=True)
class Retention:
    """How long to keep runs that ended, for an engine that deletes older ones itself.

    Attributes:
        older_than: Runs that ended longer ago than this are deleted.
        statuses: Which ended runs (all by default: succeeded, failed, cancelled).
        every: How often the engine looks for runs to delete.
        keep_stats: Keep their metrics and model calls (tied to no run), so the statistics
            views (`flowstore_llm_usage` too) still count them.
        batch_seconds: About how long one batch may hold the database's write lock.
    """

    older_than: timedelta
    statuses: Collection[RunStatus] = field(default=ENDED)
    every: timedelta = timedelta(hours=1)
    keep_stats: bool = False
    batch_seconds: float = 0.01

    def __post_init__(self) -> None:
        if self.older_than <= timedelta(0):
            raise ConfigurationError(f"Retention(older_than={self.older_than}): must be positive")
        if self.every <= timedelta(0):
            raise ConfigurationError(f"Retention(every={self.every}): must be positive")
        _only_ended(self.statuses, "Retention(statuses=...): ")


def _only_ended(statuses: Collection[RunStatus], where: str = "") -> None:
    unended = sorted(status.value for status in statuses if not status.is_terminal)
    if unended:
        raise ConfigurationError(f"{where}only runs that ended can be deleted, not {unended}")


@dataclass
class Sweep:
    """What one pass of `delete_old_runs` did; `steps` says when each of its transactions
    began (wall clock), what it was (`delete` or `reclaim`) and how long it took, in ms."""

    deleted: int = 0
    batches: int = 0
    longest_batch_ms: float = 0.0
    pages_freed: int = 0
    longest_reclaim_ms: float = 0.0
    steps: list[tuple[str, datetime, float]] = field(default_factory=list)


async def delete_old_runs(
    store: RetentionStore,
    *,
    ended_before: datetime,
    statuses: Collection[RunStatus] = ENDED,
    keep_stats: bool = False,
    batch_seconds: float = 0.01,
    limit: int | None = None,
    first_batch: int = _FIRST_BATCH,
) -> Sweep:
    """Delete the runs with one of `statuses` that ended before `ended_before`, in batches
    of about `batch_seconds` each (the first of `first_batch` runs), and (SQLite) give the
    freed pages back; at most `limit` runs when given."""
    _only_ended(statuses)
    sweep, batch = Sweep(), first_batch
    while limit is None or sweep.deleted < limit:
        size = batch if limit is None else min(batch, limit - sweep.deleted)
        began, started = datetime.now(UTC), time.perf_counter()
        deleted = await store.delete_ended_runs(
            ended_before=ended_before, statuses=statuses, limit=size, keep_stats=keep_stats
        )
        took = time.perf_counter() - started
        sweep.deleted += deleted
        sweep.batches += 1
        sweep.longest_batch_ms = max(sweep.longest_batch_ms, took * 1000)
        sweep.steps.append(("delete", began, took * 1000))
        # A rest three times as long as the batch: writers of other processes, which retry
        # with SQLite's busy handler (after 1, 3, 8, 18, 33... ms), find the lock free at
        # most retries rather than miss it several times in a row.
        await asyncio.sleep(_REST * took)
        if deleted < size:
            break
        batch = _scaled(batch, batch_seconds, took, 5, _LARGEST_BATCH)
    if sweep.deleted:
        await _give_back(store, sweep, batch_seconds)
    return sweep


async def _give_back(store: RetentionStore, sweep: Sweep, step_seconds: float) -> None:
    """Give the free pages back to the file system (SQLite with incremental auto-vacuum),
    in steps of about `step_seconds`, once the deletes are done: moving pages is slower,
    and less even, than deleting rows, so it starts small."""
    pages = _FIRST_RECLAIM
    while True:
        began, started = datetime.now(UTC), time.perf_counter()
        freed = await store.reclaim_space(pages=pages)
        spent = time.perf_counter() - started
        sweep.steps.append(("reclaim", began, spent * 1000))
        sweep.pages_freed += freed
        sweep.longest_reclaim_ms = max(sweep.longest_reclaim_ms, spent * 1000)
        await asyncio.sleep(_REST * spent)
        if freed < pages:
            return
        pages = _scaled(pages, step_seconds, spent, 8, _LARGEST_RECLAIM)


def _scaled(size: int, goal: float, took: float, least: int, most: int) -> int:
    """The next size of a step that took `took` s for `size`, to take about `goal` s:
    grown by half at most while steps are quick, halved at most when one is slow."""
    scale = min(max(goal / max(took, 1e-4), 0.5), 1.5)
    return max(least, min(most, int(size * scale)))


async def keep_deleting(store: RetentionStore, retention: Retention) -> None:
    """An engine's background retention: a pass every `retention.every`, for as long as the
    engine runs (a failure is logged, and the next pass tries again)."""
    period = retention.every.total_seconds()
    while True:
        try:
            sweep = await delete_old_runs(
                store,
                ended_before=datetime.now(UTC) - retention.older_than,
                statuses=retention.statuses,
                keep_stats=retention.keep_stats,
                batch_seconds=retention.batch_seconds,
            )
        except Exception as error:  # the store failing: try again next time
            log.warning("deleting old runs failed: %s", error)
        else:
            if sweep.deleted:
                log.info(
                    "deleted %d runs that ended over %s ago, in %d batches (longest %.0f ms)",
                    sweep.deleted,
                    retention.older_than,
                    sweep.batches,
                    sweep.longest_batch_ms,
                )
        await asyncio.sleep(period)
