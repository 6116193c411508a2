"""The workers a person looks at (`flowstore workers`, the inspector's workers page): those
alive, how long since each one's heartbeat, and the runs each holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from flowstore.store.protocol import Store
from flowstore.store.records import RunQuery, RunStatus, WorkerInfo

__all__ = ["SILENT_AFTER", "WorkerHolding", "list_workers"]

SILENT_AFTER = 300.0
"""Seconds without a heartbeat after which a worker is left out (unless it holds runs)."""


@dataclass(frozen=True, slots=True)
class WorkerHolding:
    """A worker, seconds since its heartbeat (at the time of listing), and the runs it holds."""

    worker: WorkerInfo
    heartbeat_age: float
    runs: list[str]


async def list_workers(store: Store, *, silent_too: bool = False) -> list[WorkerHolding]:
    """The registered workers that beat in the last `SILENT_AFTER` seconds or hold runs (all
    of them with `silent_too`), each with the running runs whose lease it holds."""
    workers = await store.list_workers()
    running = await store.list_runs(
        RunQuery(statuses=frozenset({RunStatus.RUNNING}), limit=100_000)
    )
    held: dict[str, list[str]] = {}
    for run in running:
        if run.lease_owner is not None:
            held.setdefault(run.lease_owner, []).append(str(run.id))
    now = datetime.now(UTC)
    listed = [
        WorkerHolding(worker, (now - worker.heartbeat_at).total_seconds(), held.get(worker.id, []))
        for worker in workers
    ]
    return [
        listing
        for listing in listed
        if silent_too or listing.runs or listing.heartbeat_age <= SILENT_AFTER
    ]
