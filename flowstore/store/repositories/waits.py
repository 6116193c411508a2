"""Waits: a node execution waiting for a time or a signal, and the signals it takes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from flowstore.errors import LeaseLost
from flowstore.store.records import RunId, Signal, Wait, WaitChange
from flowstore.store.repositories._common import upsert
from flowstore.store.schema import runs, signals, waits

__all__ = ["apply_change", "due_if_signalled", "next_signal", "read_waits"]


def apply_change(conn: Connection, run_id: RunId, change: WaitChange, *, now: datetime) -> None:
    """Record a wait beginning or ending, in the run's commit; a signal it takes is marked
    consumed in the same transaction, so it is taken once, whatever crashes after.

    Raises:
        LeaseLost: The signal was taken already: nothing is written.
    """
    row = {
        "run_id": run_id,
        "node": change.node,
        "exec_key": change.key,
        "seq": change.seq,
        "kind": change.kind,
        "name": change.name,
        "started_at": now,
        "wake_at": change.wake_at,
        "ended_at": None if change.outcome is None else now,
        "outcome": change.outcome,
        "signal_id": change.signal_id,
    }
    stmt = upsert(conn, waits).values(row)
    ended = {name: stmt.excluded[name] for name in ("ended_at", "outcome", "signal_id")}
    conn.execute(
        stmt.on_conflict_do_update(index_elements=["run_id", "node", "exec_key", "seq"], set_=ended)
    )
    if change.signal_id is not None:
        taken = conn.execute(
            update(signals)
            .where(signals.c.id == change.signal_id, signals.c.consumed_at.is_(None))
            .values(consumed_at=now)
        )
        if taken.rowcount != 1:
            raise LeaseLost(
                f"signal {change.signal_id} of run {run_id} was taken already; nothing was written"
            )


def due_if_signalled(
    conn: Connection, run_id: RunId, names: Sequence[str], *, now: datetime
) -> None:
    """Make a run that has just gone waiting due now when a signal it waits for is there
    already. The run's row is locked by the commit, so a sender either ran before it (its
    signal is seen here) or waits for it (and sees the run waiting)."""
    if not names:
        return
    pending = (
        select(signals.c.id)
        .where(
            signals.c.run_id == run_id,
            signals.c.name.in_(list(names)),
            signals.c.consumed_at.is_(None),
        )
        .limit(1)
    )
    if conn.execute(pending).first() is not None:
        conn.execute(update(runs).where(runs.c.id == run_id).values(wake_at=now))


def read_waits(conn: Connection, run_id: RunId) -> list[Wait]:
    """A run's waits, in the order they began."""
    stmt = (
        select(waits)
        .where(waits.c.run_id == run_id)
        .order_by(waits.c.started_at, waits.c.node, waits.c.exec_key, waits.c.seq)
    )
    return [Wait.from_row(row) for row in conn.execute(stmt).mappings()]


def next_signal(conn: Connection, run_id: RunId, name: str) -> Signal | None:
    """The oldest signal of that name sent to the run and not taken yet."""
    stmt = (
        select(signals)
        .where(
            signals.c.run_id == run_id,
            signals.c.name == name,
            signals.c.consumed_at.is_(None),
        )
        .order_by(signals.c.id)
        .limit(1)
    )
    row = conn.execute(stmt).mappings().first()
    return None if row is None else Signal.from_row(row)
