"""The `Store` protocol: every domain-level operation the runtime asks of the database.

It is made of parts, one per concern, each its own protocol: runs (`RunStore`), what workers
do to own them (`WorkerStore`), the transition log (`RunLog`), queues, schedules and
retention, and the cache, memory, telemetry and circuit breakers. Every part has the
`Connector`'s `encode` and `close`. A component that needs one concern takes that part
(memory takes a `MemoryStore`), so what it can touch is in its signature; the executor and
the engine take the whole `Store`. `SQLStore` implements each part in a class of its own,
all over one connector that owns the transactions (`transactions.SQLTransactions`).
"""

from __future__ import annotations

from typing import Protocol

from flowstore.store.protocol.data import BreakerStore, CacheStore, MemoryStore, TelemetryStore
from flowstore.store.protocol.operations import QueueStore, RetentionStore, ScheduleStore
from flowstore.store.protocol.runs import Connector, RunLog, RunStore, WorkerStore

__all__ = [
    "BreakerStore",
    "CacheStore",
    "Connector",
    "MemoryStore",
    "QueueStore",
    "RetentionStore",
    "RunLog",
    "RunStore",
    "ScheduleStore",
    "Store",
    "TelemetryStore",
    "WorkerStore",
]


class Store(
    RunStore,
    WorkerStore,
    RunLog,
    QueueStore,
    ScheduleStore,
    RetentionStore,
    CacheStore,
    MemoryStore,
    TelemetryStore,
    BreakerStore,
    Protocol,
):
    """Durable state of runs, memory, cache and telemetry: every part in one.

    Every method is one transaction. Methods that write for a run that a worker owns take the
    worker's fencing number and refuse (`LeaseLost`) when it is stale, writing nothing.
    """
