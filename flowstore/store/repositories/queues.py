"""Queues: their limits, their state, and the room each has at a claim.

A claim (`ownership.claim_run`) asks `claim_gate` which queues may start or resume a run now, and
which of their keys are at their limit, then looks for the next run of each open queue
through the claim index. On PostgreSQL `claim_gate` locks the stored queues' rows for the
rest of the claim, so two claims never both count the same free place; on SQLite the claim's
`BEGIN IMMEDIATE` does that already.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.engine import Connection

from flowstore.errors import IntegrityConflict, QueueNotFound
from flowstore.store.queue_records import Queue, QueueState
from flowstore.store.records import RunStatus
from flowstore.store.repositories._common import upsert
from flowstore.store.schema import queues, runs

__all__ = [
    "NO_QUEUES",
    "ClaimGate",
    "check_queue",
    "claim_gate",
    "list_queues",
    "locked_queues",
    "open_queues",
    "queue_states",
    "remove_queue",
    "set_queue",
    "started_since_query",
]

_UNENDED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value, RunStatus.WAITING.value)


def set_queue(conn: Connection, queue: Queue, *, now: datetime) -> None:
    """Store a queue, or change the limits of the one of that name."""
    row = queue.row()
    stmt = upsert(conn, queues).values(**row, created_at=now, updated_at=now)
    changed = {name: stmt.excluded[name] for name in row if name != "name"}
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[queues.c.name], set_={**changed, "updated_at": now}
        )
    )


def remove_queue(conn: Connection, name: str) -> None:
    """Delete a queue that no unended run is in.

    Raises:
        QueueNotFound: No queue has this name.
        IntegrityConflict: Runs in it have not ended (cancel them, or let them end).
    """
    check_queue(conn, name)
    unended = conn.execute(
        select(func.count()).where(runs.c.queue == name, runs.c.status.in_(_UNENDED))
    ).scalar_one()
    if unended:
        raise IntegrityConflict(
            f"queue {name!r} has {unended} runs that have not ended: cancel them or let them "
            "end before removing it"
        )
    conn.execute(delete(queues).where(queues.c.name == name))


def check_queue(conn: Connection, name: str) -> None:
    """Raise `QueueNotFound` unless a queue of this name is stored."""
    if conn.execute(select(queues.c.name).where(queues.c.name == name)).first() is None:
        stored = conn.execute(select(queues.c.name).order_by(queues.c.name)).scalars().all()
        raise QueueNotFound(
            f"no queue is named {name!r} (stored: {', '.join(stored) or 'none'}): declare it "
            "with Engine(queues=[Queue(...)]) or `flowstore queues set`"
        )


def list_queues(conn: Connection) -> list[Queue]:
    """The stored queues, by name."""
    rows = conn.execute(select(queues).order_by(queues.c.name))
    return [Queue.from_row(row) for row in rows]


def queue_states(conn: Connection, *, now: datetime) -> list[QueueState]:
    """Each stored queue with its unended runs counted (an index range of each queue's)."""
    states = []
    for queue in list_queues(conn):
        stmt = (
            select(runs.c.status, func.count(), func.min(runs.c.created_at))
            .where(runs.c.queue == queue.name, runs.c.status.in_(_UNENDED))
            .group_by(runs.c.status)
        )
        counts = {status: (count, first) for status, count, first in conn.execute(stmt)}
        recent = None
        if queue.rate_limit is not None:
            recent = _started_since(conn, queue.name, now - timedelta(seconds=queue.rate_period))
        queued, oldest = counts.get(RunStatus.QUEUED.value, (0, None))
        states.append(
            QueueState(
                queue=queue,
                queued=queued,
                running=counts.get(RunStatus.RUNNING.value, (0, None))[0],
                waiting=counts.get(RunStatus.WAITING.value, (0, None))[0],
                oldest_queued_at=oldest,
                started_recently=recent,
            )
        )
    return states


def _started_since(conn: Connection, queue: str, since: datetime) -> int:
    """How many of the queue's runs started after `since`."""
    count: int = conn.execute(started_since_query(queue, since)).scalar_one()
    return count


def started_since_query(queue: str, since: datetime) -> Select[Any]:
    """The SELECT of `_started_since` (the index on queue and start answers it)."""
    return select(func.count()).where(runs.c.queue == queue, runs.c.started_at > since)


@dataclass(frozen=True, slots=True)
class ClaimGate:
    """Which queued runs a claim may take now.

    Attributes:
        queues: Every stored queue's name.
        closed_to_start: Queues that may start no run now: as many running as their
            concurrency, or as many started in the window as their rate limit.
        closed_to_resume: Queues that may take up no run now, not even one that has started
            and waited: as many running as their concurrency.
        full_keys: Per queue, the keys with as many running as its per-key limit.
    """

    queues: tuple[str, ...] = ()
    closed_to_start: frozenset[str] = frozenset()
    closed_to_resume: frozenset[str] = frozenset()
    full_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)


NO_QUEUES = ClaimGate()
"""The gate of a store without queues."""


def locked_queues(conn: Connection) -> list[Queue]:
    """The stored queues, their rows locked until this transaction ends on PostgreSQL:
    claims in queues take turns, each counting the runs the one before started."""
    rows = conn.execute(select(queues).order_by(queues.c.name).with_for_update())
    return [Queue.from_row(row) for row in rows]


def claim_gate(conn: Connection, stored: Sequence[Queue], *, now: datetime) -> ClaimGate:
    """The room each of the `stored` queues (`locked_queues`) has at `now`."""
    limited = [queue for queue in stored if queue.limited]
    if not limited:
        return ClaimGate(queues=tuple(queue.name for queue in stored))
    running: dict[str, int] = {}
    by_key: dict[str, dict[str, int]] = {}
    stmt = (
        select(runs.c.queue, runs.c.queue_key, func.count())
        .where(
            runs.c.status == RunStatus.RUNNING.value,
            runs.c.queue.in_([queue.name for queue in limited]),
        )
        .group_by(runs.c.queue, runs.c.queue_key)
    )
    for queue, key, count in conn.execute(stmt):
        running[queue] = running.get(queue, 0) + count
        if key is not None:
            by_key.setdefault(queue, {})[key] = count
    full = frozenset(
        queue.name
        for queue in limited
        if queue.concurrency is not None and running.get(queue.name, 0) >= queue.concurrency
    )
    rated = frozenset(
        queue.name
        for queue in limited
        if queue.name not in full
        and queue.rate_limit is not None
        and _started_since(conn, queue.name, now - timedelta(seconds=queue.rate_period))
        >= queue.rate_limit
    )
    full_keys = {
        queue.name: _at_limit(by_key.get(queue.name, {}), queue.per_key)
        for queue in limited
        if queue.per_key is not None
    }
    return ClaimGate(
        queues=tuple(queue.name for queue in stored),
        closed_to_start=full | rated,
        closed_to_resume=full,
        full_keys={name: keys for name, keys in full_keys.items() if keys},
    )


def _at_limit(counts: dict[str, int], limit: int | None) -> tuple[str, ...]:
    return tuple(sorted(key for key, count in counts.items() if limit and count >= limit))


def open_queues(gate: ClaimGate, closed: Collection[str]) -> list[str | None]:
    """The queues a claim looks in: no queue (None), then each stored queue not `closed`."""
    return [None, *(name for name in gate.queues if name not in closed)]
