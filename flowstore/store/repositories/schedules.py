"""Schedules: storing them, finding the due ones, and starting a schedule's due ticks once.

`fire_schedule` moves a schedule's `next_at` on only if it is still the value the worker read
(compare and set), and in the same transaction stores a row per tick it starts and creates
each tick's run. Two workers that read the same due schedule both try; one transaction moves
it, the other changes nothing. The tick rows' key (schedule, tick time) makes a second start of
one tick impossible even so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from flowstore.errors import ScheduleNotFound
from flowstore.store.repositories import runs
from flowstore.store.repositories._common import Encoder, upsert
from flowstore.store.schedule_records import Schedule, Tick
from flowstore.store.schema import schedule_ticks, schedules

__all__ = [
    "due_schedules",
    "fire_schedule",
    "get_schedule",
    "list_schedules",
    "list_ticks",
    "next_schedule_at",
    "pause_schedule",
    "remove_schedule",
    "save_schedule",
]


def save_schedule(conn: Connection, schedule: Schedule, *, now: datetime, encode: Encoder) -> None:
    """Store a schedule, or replace the one of its name (keeping when it was created)."""
    row = {field.name: getattr(schedule, field.name) for field in dataclasses.fields(schedule)}
    row["inputs"] = encode(schedule.inputs, what=f"inputs of schedule {schedule.name!r}")
    row.update(created_at=schedule.created_at or now, updated_at=now)
    stmt = upsert(conn, schedules).values(**row)
    changed = {name: stmt.excluded[name] for name in row if name not in ("name", "created_at")}
    conn.execute(stmt.on_conflict_do_update(index_elements=[schedules.c.name], set_=changed))


def get_schedule(conn: Connection, name: str) -> Schedule:
    """One schedule. Raises `ScheduleNotFound`."""
    row = conn.execute(select(schedules).where(schedules.c.name == name)).mappings().first()
    if row is None:
        stored = conn.execute(select(schedules.c.name).order_by(schedules.c.name)).scalars()
        raise ScheduleNotFound(
            f"no schedule is named {name!r} (stored: {', '.join(stored) or 'none'})"
        )
    return Schedule.from_row(row)


def list_schedules(conn: Connection) -> list[Schedule]:
    """Every schedule, by name."""
    rows = conn.execute(select(schedules).order_by(schedules.c.name)).mappings()
    return [Schedule.from_row(row) for row in rows]


def pause_schedule(
    conn: Connection, name: str, *, paused: bool, now: datetime, next_at: datetime | None
) -> Schedule:
    """Pause a schedule, or let it run again from `next_at` (the ticks meanwhile are not
    started). Raises `ScheduleNotFound`."""
    get_schedule(conn, name)
    values: dict[str, object] = {"paused_at": now if paused else None, "updated_at": now}
    if not paused and next_at is not None:
        values["next_at"] = next_at
    conn.execute(update(schedules).where(schedules.c.name == name).values(**values))
    return get_schedule(conn, name)


def remove_schedule(conn: Connection, name: str) -> None:
    """Delete a schedule and its tick rows (the runs it started stay). Raises
    `ScheduleNotFound`."""
    get_schedule(conn, name)
    conn.execute(delete(schedules).where(schedules.c.name == name))


def due_schedules(conn: Connection, *, now: datetime, workflows: Collection[str]) -> list[Schedule]:
    """The schedules of these workflows, not paused, whose next tick has come."""
    stmt = (
        select(schedules)
        .where(
            schedules.c.next_at <= now,
            schedules.c.paused_at.is_(None),
            schedules.c.workflow.in_(list(workflows)),
        )
        .order_by(schedules.c.next_at)
    )
    return [Schedule.from_row(row) for row in conn.execute(stmt).mappings()]


def next_schedule_at(conn: Connection, workflows: Collection[str]) -> datetime | None:
    """When the first of these workflows' schedules that is not paused next ticks."""
    stmt = select(func.min(schedules.c.next_at)).where(
        schedules.c.paused_at.is_(None), schedules.c.workflow.in_(list(workflows))
    )
    soonest: datetime | None = conn.execute(stmt).scalar()
    return soonest


def fire_schedule(
    conn: Connection,
    schedule: Schedule,
    ticks: Sequence[Tick],
    *,
    next_at: datetime,
    skipped: int,
    now: datetime,
    encode: Encoder,
) -> bool:
    """Start `ticks` and move the schedule on to `next_at`, if its `next_at` is still the one
    `schedule` has (else another worker did, and nothing is written); whether it did."""
    moved = conn.execute(
        update(schedules)
        .where(
            schedules.c.name == schedule.name,
            schedules.c.next_at == schedule.next_at,
            schedules.c.paused_at.is_(None),
        )
        .values(
            next_at=next_at,
            last_tick_at=max((tick.at for tick in ticks), default=schedule.last_tick_at),
            started=schedules.c.started + len(ticks),
            skipped=schedules.c.skipped + skipped,
            updated_at=now,
        )
    )
    if moved.rowcount != 1:
        return False
    for tick in ticks:
        run = runs.create_run(conn, tick.run, now=now, encode=encode)
        conn.execute(
            schedule_ticks.insert().values(
                schedule=schedule.name, tick_at=tick.at, run_id=run.id, created_at=now
            )
        )
    return True


def list_ticks(conn: Connection, name: str, *, limit: int) -> list[tuple[datetime, str | None]]:
    """A schedule's latest ticks started, newest first: each tick's time and run."""
    stmt = (
        select(schedule_ticks.c.tick_at, schedule_ticks.c.run_id)
        .where(schedule_ticks.c.schedule == name)
        .order_by(schedule_ticks.c.tick_at.desc())
        .limit(limit)
    )
    return [(row.tick_at, row.run_id) for row in conn.execute(stmt)]
