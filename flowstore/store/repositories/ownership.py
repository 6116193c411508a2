"""Ownership of runs: claims with leases and fencing numbers, and the workers that hold them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Select,
    and_,
    delete,
    func,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection

from flowstore.errors import LeaseLost, RunNotFound
from flowstore.store.notices import notify_work
from flowstore.store.records import (
    Claim,
    RunId,
    RunRecord,
    RunStatus,
    WorkerId,
    WorkerInfo,
)
from flowstore.store.repositories._common import upsert
from flowstore.store.repositories.queues import (
    NO_QUEUES,
    ClaimGate,
    claim_gate,
    locked_queues,
    open_queues,
)
from flowstore.store.repositories.runs import CLAIMABLE, claim_payload, log_run_status
from flowstore.store.schema import runs, workers

__all__ = [
    "claim_candidates",
    "claim_run",
    "heartbeat",
    "lease_lost",
    "list_workers",
    "next_wake_at",
    "next_wake_query",
    "register_worker",
    "release_lease",
    "remove_worker",
    "renew_lease",
]


def claim_run(
    conn: Connection,
    owner: WorkerId,
    *,
    clock: Callable[[], datetime],
    lease_seconds: float,
    workflows: Collection[str] | None,
    run_id: RunId | None,
    graph_hashes: Collection[str] | None = None,
    steal_from: Collection[WorkerId],
) -> Claim | None:
    """Take the lease of the next claimable run, bumping its fencing number.

    A run is claimable when it is queued, or running with no live lease: its lease expired,
    was released, or belongs to a worker in `steal_from` (known to be dead); or waiting and
    due (`wake_at` passed: a sleep ended, a signal came, a wait timed out). A queued or due
    run in a queue is claimable only while its queue has room (`queues.claim_gate`); a running
    one holds its place already. Of those, the highest priority, then the oldest, is taken.

    Each kind is looked up by a query of its own that an index answers (`claim_candidates`), so
    the runs that ended, however many, are never read. On PostgreSQL each candidate row is
    locked with `FOR UPDATE SKIP LOCKED`, so concurrent claimers take different runs; on
    SQLite the caller's `BEGIN IMMEDIATE` serializes claims.

    The time of the claim (`clock`) is read once the transaction holds those locks, so a
    queue's stored start and end times show what its limits allowed.
    """
    stored = locked_queues(conn)
    now = clock()
    gate = claim_gate(conn, stored, now=now)
    found = [
        row
        for query in claim_candidates(
            now,
            workflows=workflows,
            run_id=run_id,
            graph_hashes=graph_hashes,
            dead=steal_from,
            gate=gate,
        )
        for row in conn.execute(query)
    ]
    if not found:
        return None
    best = min(found, key=lambda row: (-row.priority, row.created_at, row.id))
    expires = now + timedelta(seconds=lease_seconds)
    claimed = conn.execute(
        update(runs)
        .where(runs.c.id == best.id)
        .values(
            status=RunStatus.RUNNING.value,
            lease_owner=owner,
            lease_expires_at=expires,
            fencing=runs.c.fencing + 1,
            last_seq=runs.c.last_seq + 1,
            started_at=func.coalesce(runs.c.started_at, now),
            wake_at=None,
            updated_at=now,
        )
        .returning(*runs.c)
    )
    run = RunRecord.from_row(claimed.mappings().one())
    payload = claim_payload(owner, run.fencing)
    log_run_status(conn, run.id, run.last_seq, RunStatus.RUNNING, payload, now)
    return Claim(run=run, owner=owner, fencing=run.fencing, lease_expires_at=expires)


def claim_candidates(
    now: datetime,
    *,
    workflows: Collection[str] | None,
    run_id: RunId | None,
    graph_hashes: Collection[str] | None,
    dead: Collection[WorkerId],
    gate: ClaimGate = NO_QUEUES,
) -> list[Any]:
    """The first claimable run of each kind in claim order, by a query an index answers:
    queued ones of each queue with room (and of no queue) from `ix_flowstore_runs_claim`, read
    in its order, passing over the keys at their limit; running ones whose lease is free from
    the same index (running runs are few: one per executing run at most); waiting ones from
    the range of `status, wake_at` that is due, sorted (only the runs due and not yet taken)."""
    lease_free = or_(runs.c.lease_expires_at.is_(None), runs.c.lease_expires_at <= now)
    if dead:
        lease_free = or_(lease_free, runs.c.lease_owner.in_(list(dead)))
    conditions = [
        and_(runs.c.status == RunStatus.QUEUED.value, _in_queue(queue, gate))
        for queue in open_queues(gate, gate.closed_to_start)
    ]
    conditions.append(and_(runs.c.status == RunStatus.RUNNING.value, lease_free))
    due = [runs.c.status == RunStatus.WAITING.value, runs.c.wake_at <= now]
    if gate.closed_to_resume:
        due.append(or_(runs.c.queue.is_(None), runs.c.queue.not_in(gate.closed_to_resume)))
    due += [_not_full(queue, keys) for queue, keys in gate.full_keys.items()]
    conditions.append(and_(*due))
    queries = []
    for condition in conditions:
        query = select(runs.c.id, runs.c.priority, runs.c.created_at).where(condition)
        if workflows is not None:
            query = query.where(runs.c.workflow.in_(list(workflows)))
        if graph_hashes is not None:
            query = query.where(runs.c.graph_hash.in_(list(graph_hashes)))
        if run_id is not None:
            query = query.where(runs.c.id == run_id)
        queries.append(query.order_by(*_CLAIM_ORDER).limit(1).with_for_update(skip_locked=True))
    # SQLite could read every waiting run in claim order rather than sort the due ones.
    queries[-1] = queries[-1].with_hint(runs, f"INDEXED BY {_DUE_INDEX}", "sqlite")
    return queries


def _in_queue(queue: str | None, gate: ClaimGate) -> Any:
    """The queued runs of `queue` (of none: None) that may start, as far as their key says."""
    if queue is None:
        return runs.c.queue.is_(None)
    keys = gate.full_keys.get(queue)
    if not keys:
        return runs.c.queue == queue
    return and_(
        runs.c.queue == queue, or_(runs.c.queue_key.is_(None), runs.c.queue_key.not_in(keys))
    )


def _not_full(queue: str, keys: Collection[str]) -> Any:
    """Not a run of `queue` with one of `keys` (at its per-key limit)."""
    return or_(
        runs.c.queue.is_(None),
        runs.c.queue != queue,
        runs.c.queue_key.is_(None),
        runs.c.queue_key.not_in(list(keys)),
    )


_DUE_INDEX = f"ix_{runs.name}_status_wake_at"

_CLAIM_ORDER = (runs.c.priority.desc(), runs.c.created_at, runs.c.id)
"""The order runs are claimed in; the index `ix_flowstore_runs_claim` has it after the status
and the queue."""


def lease_lost(conn: Connection, run_id: RunId, fencing: int) -> LeaseLost:
    """The error for a write whose fencing number no longer matches (or `RunNotFound`)."""
    row = (
        conn.execute(
            select(runs.c.fencing, runs.c.lease_owner, runs.c.status).where(runs.c.id == run_id)
        )
    ).first()
    if row is None:
        raise RunNotFound(f"no run has the id {run_id!r}")
    return LeaseLost(
        f"run {run_id} is no longer owned by this worker: its fencing number is {row.fencing} "
        f"(owner {row.lease_owner or 'none'}, status {row.status}), this write carried "
        f"{fencing}; nothing was written"
    )


def _owned(run_id: RunId, owner: WorkerId, fencing: int) -> Any:
    return and_(
        runs.c.id == run_id,
        runs.c.fencing == fencing,
        runs.c.lease_owner == owner,
        runs.c.status.in_(CLAIMABLE),
    )


def renew_lease(
    conn: Connection,
    run_id: RunId,
    owner: WorkerId,
    fencing: int,
    *,
    now: datetime,
    lease_seconds: float,
) -> datetime:
    """Extend the lease; raise `LeaseLost` when another worker owns the run now."""
    expires = now + timedelta(seconds=lease_seconds)
    result = conn.execute(
        update(runs).where(_owned(run_id, owner, fencing)).values(lease_expires_at=expires)
    )
    if result.rowcount != 1:
        raise lease_lost(conn, run_id, fencing)
    return expires


def release_lease(conn: Connection, run_id: RunId, owner: WorkerId, fencing: int) -> bool:
    """Give up the lease so another worker may claim the run at once; False if already lost.

    The fencing number moves on, so nothing the releasing worker still sends is accepted."""
    released = conn.execute(
        update(runs)
        .where(_owned(run_id, owner, fencing))
        .values(lease_owner=None, lease_expires_at=None, fencing=runs.c.fencing + 1)
        .returning(runs.c.graph_hash)
    ).first()
    if released is None:
        return False
    notify_work(conn, released.graph_hash)  # another worker takes it over at once
    return True


def next_wake_at(conn: Connection, graph_hashes: Collection[str]) -> datetime | None:
    """When the first waiting run of these definitions is due (the index on status and
    wake_at finds it without reading the runs that wait for a signal only)."""
    wake_at: datetime | None = conn.execute(next_wake_query(graph_hashes)).scalar()
    return wake_at


def next_wake_query(graph_hashes: Collection[str]) -> Select[Any]:
    """The SELECT of `next_wake_at`."""
    return (
        select(runs.c.wake_at)
        .where(
            runs.c.status == RunStatus.WAITING.value,
            runs.c.wake_at.is_not(None),
            runs.c.graph_hash.in_(list(graph_hashes)),
        )
        .order_by(runs.c.wake_at)
        .limit(1)
    )


def register_worker(conn: Connection, worker: WorkerInfo) -> None:
    """Insert or refresh a worker row."""
    stmt = upsert(conn, workers).values(
        id=worker.id,
        hostname=worker.hostname,
        pid=worker.pid,
        started_at=worker.started_at,
        heartbeat_at=worker.heartbeat_at,
        metadata=worker.metadata,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[workers.c.id],
            set_={
                "hostname": stmt.excluded.hostname,
                "pid": stmt.excluded.pid,
                "heartbeat_at": stmt.excluded.heartbeat_at,
                "metadata": stmt.excluded.metadata,
            },
        )
    )


def heartbeat(
    conn: Connection,
    worker: WorkerInfo,
    leases: Mapping[RunId, int],
    *,
    now: datetime,
    lease_seconds: float,
    forget_after: float,
) -> frozenset[RunId]:
    """Record a worker's heartbeat and extend the leases it holds (`leases`: run id to
    fencing number); return the runs whose lease was extended, and those that do not exist
    yet (their creating commit has not landed: their lease starts with it).

    Only the runs named are renewed, and only while the worker still owns them with that
    fencing number: a run its executor gave up on stops being renewed, so its lease expires
    even though the worker lives. The worker's row is written again if it was forgotten, and
    the rows of workers silent for `forget_after` seconds are deleted.
    """
    beat = conn.execute(update(workers).where(workers.c.id == worker.id).values(heartbeat_at=now))
    if beat.rowcount != 1:
        register_worker(conn, dataclasses.replace(worker, heartbeat_at=now))
    conn.execute(
        delete(workers).where(
            workers.c.heartbeat_at < now - timedelta(seconds=forget_after),
            workers.c.id != worker.id,
        )
    )
    if not leases:
        return frozenset()
    renewed = conn.execute(
        update(runs)
        .where(
            tuple_(runs.c.id, runs.c.fencing).in_(list(leases.items())),
            runs.c.lease_owner == worker.id,
            runs.c.status.in_(CLAIMABLE),
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(runs.c.id)
    )
    extended = frozenset(RunId(run_id) for run_id in renewed.scalars())
    if len(extended) == len(leases):
        return extended
    # A run held while its first commit, which creates it, is still in flight has no row
    # yet: nobody else can own it, and its lease starts with that commit. It is not lost.
    others = [run_id for run_id in leases if run_id not in extended]
    stored = {row.id for row in conn.execute(select(runs.c.id).where(runs.c.id.in_(others)))}
    return extended | frozenset(run_id for run_id in others if run_id not in stored)


def list_workers(conn: Connection, *, heartbeat_since: datetime | None) -> list[WorkerInfo]:
    """The registered workers, optionally only those with a heartbeat since a time."""
    stmt = select(workers).order_by(workers.c.started_at, workers.c.id)
    if heartbeat_since is not None:
        stmt = stmt.where(workers.c.heartbeat_at >= heartbeat_since)
    return [WorkerInfo.from_row(row) for row in (conn.execute(stmt)).mappings()]


def remove_worker(conn: Connection, worker_id: WorkerId) -> bool:
    """Delete a worker row and release the leases it still holds (moving their fencing
    numbers on, as `release_lease` does)."""
    conn.execute(
        update(runs)
        .where(runs.c.lease_owner == worker_id, runs.c.status.in_(CLAIMABLE))
        .values(lease_owner=None, lease_expires_at=None, fencing=runs.c.fencing + 1)
    )
    result = conn.execute(delete(workers).where(workers.c.id == worker_id))
    return bool(result.rowcount == 1)
