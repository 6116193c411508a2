"""The store protocol's parts for queues, schedules and retention: operating many runs
over time."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Protocol

from flowstore.store.protocol.runs import Connector
from flowstore.store.queue_records import Queue, QueueState
from flowstore.store.records import (
    RunStatus,
    SpaceUse,
)
from flowstore.store.schedule_records import Schedule, Tick

__all__ = ["QueueStore", "RetentionStore", "ScheduleStore"]


class QueueStore(Connector, Protocol):
    """Named queues with their limits, and how full each is."""

    async def set_queue(self, queue: Queue) -> None:
        """Store a queue, or change the limits of the one of its name."""
        ...

    async def remove_queue(self, name: str) -> None:
        """Delete a queue no unended run is in. Raises `QueueNotFound`, or
        `IntegrityConflict` while runs in it have not ended."""
        ...

    async def list_queues(self) -> list[Queue]:
        """The stored queues, by name."""
        ...

    async def queue_states(self) -> list[QueueState]:
        """Each stored queue with its queued, running and waiting runs counted."""
        ...


class ScheduleStore(Connector, Protocol):
    """Schedules that start runs, and the ticks they fired."""

    async def save_schedule(self, schedule: Schedule) -> None:
        """Store a schedule, or replace the one of its name."""
        ...

    async def get_schedule(self, name: str) -> Schedule:
        """One schedule. Raises `ScheduleNotFound`."""
        ...

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        ...

    async def pause_schedule(
        self, name: str, *, paused: bool, next_at: datetime | None = None
    ) -> Schedule:
        """Pause a schedule, or let it run again from `next_at`. Raises `ScheduleNotFound`."""
        ...

    async def remove_schedule(self, name: str) -> None:
        """Delete a schedule (the runs it started stay). Raises `ScheduleNotFound`."""
        ...

    async def due_schedules(self, workflows: Collection[str]) -> list[Schedule]:
        """The schedules of these workflows, not paused, whose next tick has come."""
        ...

    async def next_schedule_at(self, workflows: Collection[str]) -> datetime | None:
        """When the first schedule of these workflows next ticks (paused ones aside)."""
        ...

    async def fire_schedule(
        self, schedule: Schedule, ticks: Sequence[Tick], *, next_at: datetime, skipped: int
    ) -> bool:
        """Create the runs of `ticks` and move the schedule on to `next_at`, in one
        transaction, unless another worker moved it since `schedule` was read (then nothing
        is written: False)."""
        ...

    async def list_ticks(self, name: str, *, limit: int = 20) -> list[tuple[datetime, str | None]]:
        """A schedule's latest ticks started, newest first, with their runs."""
        ...


class RetentionStore(Connector, Protocol):
    """Deleting ended runs and giving the space they took back."""

    async def delete_ended_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Collection[RunStatus],
        limit: int,
        keep_stats: bool = False,
    ) -> int:
        """Delete up to `limit` runs with one of `statuses` (ended ones) that ended before
        `ended_before`, with everything that belongs to them, in one
        transaction; how many. With `keep_stats` their metrics stay, tied to no run."""
        ...

    async def count_ended_runs(
        self, *, ended_before: datetime, statuses: Collection[RunStatus]
    ) -> int:
        """How many runs `delete_ended_runs` would delete, in all."""
        ...

    async def reclaim_space(self, *, pages: int) -> int:
        """SQLite: give up to `pages` free pages back to the file system, in one short
        write; how many (0 on PostgreSQL, or for a file made without incremental
        auto-vacuum)."""
        ...

    async def space_use(self) -> SpaceUse:
        """How big the SQLite file is and how much of it is free (noughts on PostgreSQL)."""
        ...

    async def vacuum(self) -> None:
        """SQLite: rewrite the file without its free pages; writers wait meanwhile."""
        ...
