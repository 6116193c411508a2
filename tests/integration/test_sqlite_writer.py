"""The SQLite writer thread: whole transactions, survives failures and cancelled callers."""

from __future__ import annotations

import asyncio
import threading

from flowstore.store import EventChange, NewRun, WorkerId, open_store
from flowstore.store.sql import SQLStore


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "flowstore-writer"]


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


async def test_closing_the_store_stops_its_writer_thread(sqlite_url: str) -> None:
    before = len(_writer_threads())
    store = await open_store(sqlite_url)
    assert len(_writer_threads()) == before + 1
    await store.close()
    assert len(_writer_threads()) == before
