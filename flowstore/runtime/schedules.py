"""Schedules: workflows started on a cron expression or an interval, each tick once.

```python
await engine.schedule(flow, "nightly", cron="0 3 * * *", timezone="Europe/Paris")
await engine.schedule(flow, "poll", every=timedelta(seconds=30), inputs={"feed": "news"})
```

Schedules are rows (`flowstore_schedules`). Every engine with workers looks after the
schedules of the workflows it has (`ScheduleLoop`): it sleeps until the next tick, reads the
schedules due, works out which of their ticks to start (`plan_ticks`), and starts them with
`Store.fire_schedule`, which moves the schedule on only if no other worker did first, creating
the ticks' runs in the same transaction. A tick is started once however many workers look,
and none is lost when one of them dies: the others start it.

A tick is on time when it is found at most `grace_seconds` after its time; later than that
(no worker was running), it is missed: skipped, or with `missed="catch_up"` the latest
`catch_up_limit` missed ticks are started, each as its own run. Cron expressions are read in
the schedule's time zone (daylight saving included) by `croniter`, the `cron` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flowstore.definition.spec import ExecutionConfig
from flowstore.errors import ConfigurationError, FlowstoreError, QueueNotFound, ScheduleNotFound
from flowstore.logs import engine_logger
from flowstore.runtime.submission import queue_of
from flowstore.store.records import NewRun, RunId
from flowstore.store.schedule_records import Missed, Schedule, Tick

if TYPE_CHECKING:
    from flowstore.store.protocol import Store

__all__ = [
    "ScheduleControl",
    "ScheduleLoop",
    "TickPlan",
    "first_tick",
    "new_schedule",
    "plan_ticks",
    "tick_run_id",
]

log = engine_logger("flowstore.schedules")

_MISSED = ("skip", "catch_up")
_COUNTED: Final = 100_000
"""The most missed cron ticks counted one by one (a schedule idle for longer counts this)."""


def new_schedule(
    name: str,
    workflow: str,
    inputs: Mapping[str, Any],
    *,
    cron: str | None,
    every: float | timedelta | None,
    timezone: str,
    missed: Missed,
    catch_up_limit: int,
    grace_seconds: float,
    queue: str | None,
    queue_key: str | None,
    priority: int,
    start_at: datetime | None,
    now: datetime,
    stored: Schedule | None,
) -> Schedule:
    """A schedule checked and ready to store. One stored already under `name` with the same
    timing keeps its next tick, counts and pause; otherwise the first tick is the first at or
    after `start_at` (cron) or `start_at` itself (interval), by default from now.

    Raises:
        ConfigurationError: A name, timing, time zone or policy that is not one.
    """
    if not name or len(name) > 200:
        raise ConfigurationError(f"schedule name {name!r}: give 1 to 200 characters")
    seconds = every.total_seconds() if isinstance(every, timedelta) else every
    if (cron is None) == (seconds is None):
        raise ConfigurationError(
            f"schedule {name!r}: give either cron='...' or every=..., and only one of them"
        )
    if seconds is not None and not seconds > 0:
        raise ConfigurationError(f"schedule {name!r}: every must be above 0 seconds, not {every}")
    if missed not in _MISSED:
        raise ConfigurationError(
            f"schedule {name!r}: missed must be 'skip' or 'catch_up', not {missed!r}"
        )
    if catch_up_limit < 1 or grace_seconds < 0:
        raise ConfigurationError(
            f"schedule {name!r}: catch_up_limit must be at least 1 and grace_seconds at "
            f"least 0 (they are {catch_up_limit} and {grace_seconds})"
        )
    _zone(name, timezone)
    if cron is not None:
        _cron(name, cron, now, timezone)  # checked now, not at the first tick
    timing = (cron, seconds, timezone)
    keep = stored is not None and stored.timing == timing and start_at is None
    start = (start_at or now).astimezone(UTC)
    return Schedule(
        name=name,
        workflow=workflow,
        cron=cron,
        every_seconds=seconds,
        timezone=timezone,
        inputs=dict(inputs),
        missed=missed,
        catch_up_limit=catch_up_limit,
        grace_seconds=grace_seconds,
        queue=queue,
        queue_key=queue_key,
        priority=priority,
        next_at=stored.next_at if keep and stored else first_tick(name, timing, start),
        last_tick_at=stored.last_tick_at if stored else None,
        started=stored.started if stored else 0,
        skipped=stored.skipped if stored else 0,
        paused_at=stored.paused_at if stored else None,
        created_at=stored.created_at if stored else None,
    )


def first_tick(
    name: str, timing: tuple[str | None, float | None, str], start: datetime
) -> datetime:
    """The first tick at or after `start`: `start` for an interval, the cron's next match
    from just before it otherwise."""
    cron, _, timezone = timing
    if cron is None:
        return start
    return _after(_cron(name, cron, start - timedelta(microseconds=1), timezone))


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What to do with a due schedule: the tick times to start, how many to skip, and the
    time of the next tick after now."""

    start: list[datetime]
    skipped: int
    next_at: datetime


def plan_ticks(schedule: Schedule, now: datetime) -> TickPlan:
    """The ticks of `schedule` from its `next_at` to `now`: each on-time one (at most
    `grace_seconds` ago) is started; the missed ones (older) are skipped, or the latest
    `catch_up_limit` of them started when the schedule catches up."""
    late_before = now - timedelta(seconds=schedule.grace_seconds)
    if schedule.every_seconds is not None:
        every = timedelta(seconds=schedule.every_seconds)
        due = (now - schedule.next_at) // every + 1  # ticks next_at + k * every up to now
        times_of = [schedule.next_at + k * every for k in range(max(due - _COUNTED, 0), due)]
        next_at = schedule.next_at + due * every
        counted = due
    else:
        times_of, counted, next_at = _cron_due(schedule, now)
    on_time = [at for at in times_of if at >= late_before]
    missed = [at for at in times_of if at < late_before]
    start = on_time
    if schedule.missed == "catch_up":
        start = missed[-schedule.catch_up_limit :] + on_time
    return TickPlan(start=start, skipped=counted - len(start), next_at=next_at)


def _cron_due(schedule: Schedule, now: datetime) -> tuple[list[datetime], int, datetime]:
    """The due cron ticks (the latest `_COUNTED`), how many there were, and the next one."""
    assert schedule.cron is not None
    ticks = _cron(schedule.name, schedule.cron, schedule.next_at, schedule.timezone)
    if schedule.next_at > now:
        return [], 0, schedule.next_at
    due, count, at = [schedule.next_at], 1, _after(ticks)
    while at <= now:
        due.append(at)
        count += 1
        if len(due) > _COUNTED:
            due.pop(0)
        at = _after(ticks)
    return due, count, at


def _after(ticks: Any) -> datetime:
    found: datetime = ticks.get_next(datetime)
    return found.astimezone(UTC)


def _cron(name: str, expression: str, start: datetime, timezone: str) -> Any:
    """A croniter over `expression` read in `timezone`, from `start`."""
    try:
        from croniter import croniter
    except ImportError:
        raise ConfigurationError(
            f"schedule {name!r}: cron schedules need the cron extra: pip install "
            "'flowstore[cron]' (an interval, every=..., needs nothing more)"
        ) from None
    try:
        return croniter(expression, start.astimezone(_zone(name, timezone)))
    except (ValueError, KeyError) as error:
        raise ConfigurationError(
            f"schedule {name!r}: cron {expression!r} is not a cron expression: {error}"
        ) from None


def _zone(name: str, timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"schedule {name!r}: {timezone!r} is not a time zone (an IANA name, such as "
            "'UTC' or 'Europe/Paris')"
        ) from None


def tick_run_id(schedule: Schedule, at: datetime) -> RunId:
    """The id of the run of a tick: the same for the same schedule (as created) and tick."""
    created = schedule.created_at.isoformat() if schedule.created_at else ""
    key = f"flowstore schedule\n{schedule.name}\n{created}\n{at.astimezone(UTC).isoformat()}"
    return RunId(str(uuid.uuid5(uuid.NAMESPACE_URL, key)))


NewTickRun = Callable[[Schedule, datetime], NewRun]
"""Builds the run of a tick: the engine's definition of the schedule's workflow."""


class ScheduleLoop:
    """Starts the due ticks of the schedules of an engine's workflows, until stopped.

    Args:
        store: The store.
        workflows: The names of the workflows whose schedules it looks after (read each time).
        new_run: Builds a tick's run.
        started: Told when runs were created (the engine wakes its workers).
        poll_seconds: The longest it sleeps without looking (a schedule added or resumed
            elsewhere is seen then).
    """

    def __init__(
        self,
        store: Store,
        workflows: Callable[[], Collection[str]],
        new_run: NewTickRun,
        *,
        started: Callable[[], None],
        poll_seconds: float,
    ) -> None:
        self._store = store
        self._workflows = workflows
        self._new_run = new_run
        self._started = started
        self._poll_seconds = max(poll_seconds, 0.05)
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Look now (a schedule was stored or resumed here)."""
        self._wake.set()

    async def run_forever(self) -> None:
        failing = False
        while True:
            pause = self._poll_seconds
            try:
                pause = await self._start_due()
            except Exception as error:  # never stops the loop: tried again after a pause
                if not failing and isinstance(error, FlowstoreError):  # the store is away
                    log.warning("schedules: %s", error)
                elif not failing:  # a bug: logged whole, once
                    log.error("schedules: starting ticks failed", exc_info=error)
                failing = True
            else:
                failing = False
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(pause, 0.0))

    async def _start_due(self) -> float:
        """Start what is due; how long to sleep before the next tick (at most a poll)."""
        names = list(self._workflows())
        if not names:
            return self._poll_seconds
        for schedule in await self._store.due_schedules(names):
            await self._fire(schedule)
        soonest = await self._store.next_schedule_at(names)
        if soonest is None:
            return self._poll_seconds
        return min((soonest - datetime.now(UTC)).total_seconds(), self._poll_seconds)

    async def _fire(self, schedule: Schedule) -> None:
        plan = plan_ticks(schedule, datetime.now(UTC))
        try:
            ticks = [Tick(at, self._new_run(schedule, at)) for at in plan.start]
        except FlowstoreError as error:  # its workflow cannot start: the ticks are skipped
            log.error("schedule %s: its ticks cannot start, skipped: %s", schedule.name, error)
            ticks = []
        skipped = plan.skipped + len(plan.start) - len(ticks)
        fired = await self._store.fire_schedule(
            schedule, ticks, next_at=plan.next_at, skipped=skipped
        )
        if fired and ticks:
            self._started()
        if fired and skipped:
            log.warning(
                "schedule %s: %d ticks skipped (found more than %g s late)",
                schedule.name,
                skipped,
                schedule.grace_seconds,
            )


class ScheduleControl:
    """Reading, pausing and removing schedules (mixed into `Engine` and `Client`, which add
    `schedule`)."""

    if TYPE_CHECKING:

        @property
        def store(self) -> Store: ...

    def _scheduled(self) -> None:
        """A schedule was stored or resumed here (an engine looks at once)."""

    async def list_schedules(self) -> list[Schedule]:
        """Every schedule, by name, with its next tick and what it started and skipped."""
        return await self.store.list_schedules()

    async def pause_schedule(self, name: str) -> Schedule:
        """Start no tick of the schedule until it is resumed. Raises `ScheduleNotFound`."""
        return await self.store.pause_schedule(name, paused=True)

    async def resume_schedule(self, name: str) -> Schedule:
        """Start its ticks again, from the first one after now: the ticks while it was paused
        are not started. Raises `ScheduleNotFound`."""
        stored = await self.store.get_schedule(name)
        next_at = first_tick(name, stored.timing, datetime.now(UTC))
        if stored.every_seconds is not None:  # on the interval's own beat
            every = timedelta(seconds=stored.every_seconds)
            next_at = stored.next_at + max(-((stored.next_at - next_at) // every), 0) * every
        resumed = await self.store.pause_schedule(name, paused=False, next_at=next_at)
        self._scheduled()
        return resumed

    async def remove_schedule(self, name: str) -> None:
        """Delete the schedule; the runs it started stay. Raises `ScheduleNotFound`."""
        await self.store.remove_schedule(name)

    async def _schedule_inputs(
        self, workflow: Any, inputs: Mapping[str, Any]
    ) -> tuple[str, ExecutionConfig, dict[str, Any]]:
        """The workflow's name and config, and `inputs` checked (and sealed) as a run's."""
        raise NotImplementedError

    async def schedule(
        self,
        workflow: Any,
        name: str,
        *,
        cron: str | None = None,
        every: float | timedelta | None = None,
        inputs: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
        missed: Missed = "skip",
        catch_up_limit: int = 10,
        grace_seconds: float = 60.0,
        queue: str | None = None,
        queue_key: str | None = None,
        priority: int = 0,
        start_at: datetime | None = None,
    ) -> Schedule:
        """Start a run of `workflow` (a `Workflow`, or a workflow's name) on every tick of a
        cron expression or an interval, once per tick however many workers run.

        Storing a schedule of a name stored already replaces it; when its timing is the
        same, its next tick stays (so declaring it at every start changes nothing).

        Args:
            workflow: The workflow; its newest definition a worker has runs at each tick.
            name: The schedule's name.
            cron: A cron expression (`0 3 * * *`; six fields: seconds last), read in
                `timezone`. Needs the `cron` extra.
            every: The interval, in seconds or as a `timedelta`, from `start_at`.
            inputs: The inputs of every run, checked now.
            timezone: The IANA time zone of the cron expression.
            missed: Ticks found more than `grace_seconds` late (no worker ran then):
                `skip` them, or `catch_up` by starting the latest `catch_up_limit`.
            catch_up_limit: The most late ticks started at once.
            grace_seconds: How late a tick may be found and still start.
            queue: The queue of its runs (else the workflow's `config.queue`).
            queue_key: Their key in the queue (else the input `config.queue_key` names).
            priority: Their priority.
            start_at: The first tick (interval), or the time from which the cron's ticks
                count; by default now.

        Raises:
            ConfigurationError: No single timing, a cron or time zone that is not one, or a
                policy out of range.
            InvalidValue: The inputs do not match the workflow's.
            QueueNotFound: No queue of that name is stored.
        """
        flow, config, checked = await self._schedule_inputs(workflow, inputs or {})
        chosen, _ = queue_of(config, checked, queue=queue, queue_key=queue_key)
        if chosen is not None:
            stored_queues = {stored.name for stored in await self.store.list_queues()}
            if chosen not in stored_queues:
                raise QueueNotFound(
                    f"schedule {name!r}: no queue is named {chosen!r}: declare it with "
                    "Engine(queues=[Queue(...)]) or `flowstore queues set`"
                )
        try:
            stored: Schedule | None = await self.store.get_schedule(name)
        except ScheduleNotFound:
            stored = None
        schedule = new_schedule(
            name,
            flow,
            checked,
            cron=cron,
            every=every,
            timezone=timezone,
            missed=missed,
            catch_up_limit=catch_up_limit,
            grace_seconds=grace_seconds,
            queue=queue,
            queue_key=queue_key,
            priority=priority,
            start_at=start_at,
            now=datetime.now(UTC),
            stored=stored,
        )
        await self.store.save_schedule(schedule)
        self._scheduled()
        return await self.store.get_schedule(name)
