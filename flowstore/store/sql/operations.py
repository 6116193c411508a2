"""`SQLStore`'s parts for queues, schedules and retention: operating many runs over time
(see `flowstore.store.sql`)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from flowstore.store import space
from flowstore.store.protocol import QueueStore, RetentionStore, ScheduleStore
from flowstore.store.queue_records import Queue, QueueState
from flowstore.store.records import (
    RunStatus,
    SpaceUse,
)
from flowstore.store.repositories import (
    queues,
    retention,
    schedules,
)
from flowstore.store.schedule_records import Schedule, Tick
from flowstore.store.transactions import SQLTransactions

__all__ = ["SQLQueues", "SQLRetention", "SQLSchedules"]


class SQLQueues(SQLTransactions, QueueStore):
    """`QueueStore` over SQL."""

    async def set_queue(self, queue: Queue) -> None:
        await self._write(f"storing queue {queue.name!r}", queues.set_queue, queue, now=self._now())

    async def remove_queue(self, name: str) -> None:
        await self._write(f"removing queue {name!r}", queues.remove_queue, name)

    async def list_queues(self) -> list[Queue]:
        return await self._read("listing queues", queues.list_queues)

    async def queue_states(self) -> list[QueueState]:
        return await self._read("reading queues", queues.queue_states, now=self._now())


class SQLSchedules(SQLTransactions, ScheduleStore):
    """`ScheduleStore` over SQL."""

    async def save_schedule(self, schedule: Schedule) -> None:
        await self._write(
            f"storing schedule {schedule.name!r}",
            schedules.save_schedule,
            schedule,
            now=self._now(),
            encode=self._encode,
        )

    async def get_schedule(self, name: str) -> Schedule:
        return await self._read(f"reading schedule {name!r}", schedules.get_schedule, name)

    async def list_schedules(self) -> list[Schedule]:
        return await self._read("listing schedules", schedules.list_schedules)

    async def pause_schedule(
        self, name: str, *, paused: bool, next_at: datetime | None = None
    ) -> Schedule:
        return await self._write(
            f"{'pausing' if paused else 'resuming'} schedule {name!r}",
            schedules.pause_schedule,
            name,
            paused=paused,
            now=self._now(),
            next_at=next_at,
        )

    async def remove_schedule(self, name: str) -> None:
        await self._write(f"removing schedule {name!r}", schedules.remove_schedule, name)

    async def due_schedules(self, workflows: Collection[str]) -> list[Schedule]:
        return await self._read(
            "reading due schedules", schedules.due_schedules, now=self._now(), workflows=workflows
        )

    async def next_schedule_at(self, workflows: Collection[str]) -> datetime | None:
        return await self._read("reading the next schedule", schedules.next_schedule_at, workflows)

    async def fire_schedule(
        self, schedule: Schedule, ticks: Sequence[Tick], *, next_at: datetime, skipped: int
    ) -> bool:
        return await self._write(
            f"starting ticks of schedule {schedule.name!r}",
            schedules.fire_schedule,
            schedule,
            ticks,
            next_at=next_at,
            skipped=skipped,
            now=self._now(),
            encode=self._encode,
        )

    async def list_ticks(self, name: str, *, limit: int = 20) -> list[tuple[datetime, str | None]]:
        return await self._read(
            f"reading ticks of schedule {name!r}", schedules.list_ticks, name, limit=limit
        )


class SQLRetention(SQLTransactions, RetentionStore):
    """`RetentionStore` over SQL."""

    async def delete_ended_runs(
        self,
        *,
        ended_before: datetime,
        statuses: Collection[RunStatus],
        limit: int,
        keep_stats: bool = False,
    ) -> int:
        deleted = await self._write_lazily(
            "deleting old runs",
            retention.delete_ended_runs,
            ended_before=ended_before,
            statuses=statuses,
            limit=limit,
            keep_stats=keep_stats,
        )
        await self._checkpoint()
        return deleted

    async def count_ended_runs(
        self, *, ended_before: datetime, statuses: Collection[RunStatus]
    ) -> int:
        return await self._read(
            "counting old runs",
            retention.count_ended_runs,
            ended_before=ended_before,
            statuses=statuses,
        )

    async def reclaim_space(self, *, pages: int) -> int:
        freed = await self._write_lazily("giving free pages back", space.reclaim, pages=pages)
        await self._checkpoint()
        return freed

    async def space_use(self) -> SpaceUse:
        return await self._read("reading the database's size", space.space_use)

    async def vacuum(self) -> None:
        await self._write("vacuuming the database", space.vacuum)
