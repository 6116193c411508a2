"""The SQLite threads: whole transactions, survive failures and cancelled callers."""

from __future__ import annotations

import asyncio
import threading

from flowstore.store import EventChange, NewRun, WorkerId, open_store
from flowstore.store.sql import SQLStore


def _threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


async def test_a_cancelled_caller_leaves_a_whole_transaction(sqlite_url: str) -> None:
    store: SQLStore = await open_store(sqlite_url)
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        batch = [EventChange("tick", {"i": i}) for i in range(500)]
        pending = [
            asyncio.create_task(store.record_transitions(run.id, 1, batch)) for _ in range(5)
        ]
        await asyncio.sleep(0)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

        after = await store.record_transitions(run.id, 1, [EventChange("after")])
        log = await store.read_transitions(run.id)
        assert [t.seq for t in log] == list(range(1, after.last_seq + 1))
        assert (after.last_seq - 2) % 500 == 0, "a cancelled batch was cut in half"
    finally:
        await store.close()


async def test_closing_the_store_stops_its_threads(sqlite_url: str) -> None:
    writers, readers = len(_threads("flowstore-writer")), len(_threads("flowstore-reader"))
    store = await open_store(sqlite_url)
    assert len(_threads("flowstore-writer")) == writers + 1
    assert len(_threads("flowstore-reader")) == readers + 2
    await store.close()
    assert len(_threads("flowstore-writer")) == writers
    assert len(_threads("flowstore-reader")) == readers


async def test_a_read_sees_one_snapshot_while_writes_go_on(sqlite_url: str) -> None:
    store: SQLStore = await open_store(sqlite_url)
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        writes = [
            asyncio.create_task(store.record_transitions(run.id, 1, [EventChange("e")] * 50))
            for _ in range(20)
        ]
        reads = [asyncio.create_task(store.read_transitions(run.id)) for _ in range(20)]
        await asyncio.gather(*writes)
        for log in await asyncio.gather(*reads):
            assert len(log) % 50 == 1, "a read saw part of a transaction"
            assert [t.seq for t in log] == list(range(1, len(log) + 1))
    finally:
        await store.close()
