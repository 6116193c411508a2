"""Signals: named payloads sent to runs, kept until a wait of the run consumes them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from flowstore.errors import RunEnded, RunNotFound
from flowstore.store.notices import notify_work
from flowstore.store.records import RunId, RunStatus, Signal
from flowstore.store.repositories._common import Encoder, upsert
from flowstore.store.schema import runs, signals

__all__ = ["list_signals", "send_signal"]


def send_signal(
    conn: Connection,
    run_id: RunId,
    name: str,
    payload: Any,
    *,
    idempotency_key: str | None,
    now: datetime,
    encode: Encoder,
) -> Signal:
    """Store a signal for a run (once per idempotency key: sending again returns the signal
    stored first, even once the run has ended) and make a waiting run due now, so a worker
    claims it and its wait sees the signal.

    Raises:
        RunNotFound: No run has this id.
        RunEnded: The run has ended: it takes no signals.
    """
    if idempotency_key is not None:  # sent already: the same answer, whatever came since
        sent = (
            conn.execute(
                select(signals).where(
                    signals.c.run_id == run_id, signals.c.idempotency_key == idempotency_key
                )
            )
            .mappings()
            .first()
        )
        if sent is not None:
            return Signal.from_row(sent)
    # Locked: a run going `waiting` at the same time commits before or after this, never
    # between the look at its status and the signal (see `waits.due_if_signalled`).
    row = conn.execute(
        select(runs.c.status, runs.c.graph_hash).where(runs.c.id == run_id).with_for_update()
    ).first()
    if row is None:
        raise RunNotFound(f"no run has the id {run_id!r}")
    status = RunStatus(row.status)
    if status.is_terminal:
        raise RunEnded(f"run {run_id} has ended ({status.value}): it takes no signal {name!r}")
    values = {
        "run_id": run_id,
        "name": name,
        "payload": encode(payload, what=f"payload of signal {name!r} to run {run_id}"),
        "idempotency_key": idempotency_key,
        "created_at": now,
    }
    stmt = upsert(conn, signals).values(values)
    if idempotency_key is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["run_id", "idempotency_key"])
    conn.execute(stmt)
    if status is RunStatus.WAITING:
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == RunStatus.WAITING.value)
            .values(wake_at=now)
        )
        notify_work(conn, row.graph_hash)  # idle workers in other processes take it up
    query = select(signals).where(signals.c.run_id == run_id)
    if idempotency_key is not None:
        query = query.where(signals.c.idempotency_key == idempotency_key)
    else:
        query = query.order_by(signals.c.id.desc()).limit(1)
    return Signal.from_row(conn.execute(query).mappings().one())


def list_signals(conn: Connection, run_id: RunId) -> list[Signal]:
    """A run's signals, in the order they were sent."""
    stmt = select(signals).where(signals.c.run_id == run_id).order_by(signals.c.id)
    return [Signal.from_row(row) for row in conn.execute(stmt).mappings()]
