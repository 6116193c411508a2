"""Schedules as stored: a workflow started on a cron expression or an interval.

Every tick is started once however many workers run: the transaction that moves a schedule's
`next_at` on (only if it is still what the worker read) also stores one row per tick it starts
in `flowstore_schedule_ticks`, keyed by the schedule and the tick's time, with the tick's run.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal

from flowstore.store.records import NewRun

__all__ = ["Missed", "Schedule", "Tick"]

Missed = Literal["skip", "catch_up"]


@dataclass(frozen=True, slots=True)
class Schedule:
    """A schedule.

    Attributes:
        name: Its name, unique.
        workflow: The workflow it starts (the newest definition the starting worker has).
        cron: A cron expression (five fields, or six with seconds last), read in `timezone`;
            or None for an interval schedule.
        every_seconds: The interval between ticks; or None for a cron schedule.
        timezone: The IANA time zone the cron expression is read in (`Europe/Paris`).
        inputs: The inputs of every run it starts (JSON).
        missed: What happens to ticks found more than `grace_seconds` late (no worker ran
            then): `skip` them, or `catch_up` (start the latest `catch_up_limit` of them).
        catch_up_limit: The most late ticks started at once when catching up.
        grace_seconds: How late a tick may be found and still start, whatever `missed` says.
        queue: The queue its runs wait in (else the workflow's own).
        queue_key: Their key in that queue.
        priority: Their priority.
        next_at: The time of its next tick.
        last_tick_at: The time of the last tick it started.
        started: How many ticks it started.
        skipped: How many ticks it skipped (late, or while its workflow could not start).
        paused_at: When it was paused (None: it runs).
        created_at: When it was first stored.
        updated_at: When it last changed.
    """

    name: str
    workflow: str
    cron: str | None
    every_seconds: float | None
    timezone: str
    inputs: Any
    missed: Missed
    catch_up_limit: int
    grace_seconds: float
    queue: str | None
    queue_key: str | None
    priority: int
    next_at: datetime
    last_tick_at: datetime | None = None
    started: int = 0
    skipped: int = 0
    paused_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Schedule:
        """Build it from a row of `flowstore_schedules`."""
        return cls(**{field.name: row[field.name] for field in fields(cls)})

    def describe(self) -> str:
        """When it ticks, in words: `cron 0 3 * * * (Europe/Paris)` or `every 30 s`."""
        if self.cron is not None:
            return f"cron {self.cron} ({self.timezone})"
        return f"every {self.every_seconds:g} s"

    @property
    def timing(self) -> tuple[str | None, float | None, str]:
        """What decides its ticks: a change of it moves `next_at`; nothing else does."""
        return (self.cron, self.every_seconds, self.timezone)


@dataclass(frozen=True, slots=True)
class Tick:
    """A tick a worker starts: its time, and the run it starts (created with it)."""

    at: datetime
    run: NewRun
