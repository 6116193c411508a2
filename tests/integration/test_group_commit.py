"""SQLite's writer commits the writes waiting together: one transaction (each write in a
savepoint of its own when one of them fails), each caller told only once it is durable."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from flowstore.errors import DatabaseGone, LeaseLost, StoreUnavailable
from flowstore.store import EventChange, NewRun, RunId, WorkerId, open_store
from flowstore.store.repositories import transitions
from flowstore.store.sql import SQLStore
from flowstore.store.sqlite_threads import SQLiteWriter


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    store: SQLStore = await open_store(sqlite_url)
    yield store
    await store.close()


def _batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each group of writes the writer takes, from now on."""
    sizes: list[int] = []
    real = SQLiteWriter._answer

    def answer(self: SQLiteWriter, conn: Any, requests: list[Any]) -> None:
        sizes.append(len(requests))
        real(self, conn, requests)

    monkeypatch.setattr(SQLiteWriter, "_answer", answer)
    return sizes


async def _runs(store: SQLStore, count: int) -> list[RunId]:
    owner = WorkerId("worker")
    return [
        (await store.create_run(NewRun("w", "1", "h", {}, owner=owner))).id for _ in range(count)
    ]


async def test_writes_waiting_at_once_share_one_commit_and_each_lands_in_its_own_run(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await _runs(store, 100)
    sizes = _batches(monkeypatch)

    async def write(run_id: RunId) -> None:
        for i in range(5):
            await store.record_transitions(run_id, 1, [EventChange("e", {"run": run_id, "i": i})])

    await asyncio.gather(*(write(run_id) for run_id in runs))

    assert sum(sizes) == 500
    assert len(sizes) < 100, f"{len(sizes)} transactions for 500 writes"
    assert max(sizes) > 10
    for run_id in runs:
        log = await store.read_transitions(run_id)
        assert [t.seq for t in log] == list(range(1, 7))
        assert [t.payload for t in log[1:]] == [{"run": run_id, "i": i} for i in range(5)]


async def test_a_write_that_fails_in_a_shared_commit_is_rolled_back_alone(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await _runs(store, 20)
    sizes = _batches(monkeypatch)
    stale = runs[7]  # written with a fencing number it does not have: LeaseLost

    results = await asyncio.gather(
        *(
            store.record_transitions(
                run_id, 99 if run_id == stale else 1, [EventChange("a"), EventChange("b")]
            )
            for run_id in runs
        ),
        return_exceptions=True,
    )

    assert max(sizes) > 1, "the writes did not share a transaction"
    assert isinstance(results[7], LeaseLost)
    assert not any(isinstance(result, BaseException) for i, result in enumerate(results) if i != 7)
    for run_id in runs:
        log = await store.read_transitions(run_id)
        assert len(log) == (1 if run_id == stale else 3)


async def test_a_write_that_fails_after_writing_leaves_nothing_and_the_others_land_once(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await _runs(store, 20)
    sizes = _batches(monkeypatch)
    broken = runs[11]

    def write_then_fail(conn: Any) -> None:
        transitions.record_transitions(
            conn, broken, 1, [EventChange("half")], now=store._now(), encode=store.encode
        )
        raise ValueError("failed after writing")

    gate = asyncio.ensure_future(store._write("holding the writer", lambda conn: _sleep(0.2)))
    await asyncio.sleep(0.05)
    results = await asyncio.gather(
        *(
            store._write("failing", write_then_fail)
            if run_id == broken
            else store.record_transitions(run_id, 1, [EventChange("a"), EventChange("b")])
            for run_id in runs
        ),
        return_exceptions=True,
    )
    await gate

    # One transaction took all twenty; the failing write was rolled back (its event too),
    # and every other write is stored once, though the transaction ran twice.
    assert sizes[-2:] == [1, 20]
    assert isinstance(results[11], ValueError)
    assert not any(isinstance(result, BaseException) for i, result in enumerate(results) if i != 11)
    for run_id in runs:
        log = await store.read_transitions(run_id)
        assert [t.seq for t in log] == ([1] if run_id == broken else [1, 2, 3])
    after = await store.record_transitions(broken, 1, [EventChange("after")])
    assert after.last_seq == 2


async def test_when_the_shared_commit_fails_every_write_in_it_fails_and_none_is_stored(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await _runs(store, 20)
    sizes = _batches(monkeypatch)
    assert store._sync_engine is not None
    dialect = store._sync_engine.dialect
    real_commit = dialect.do_commit
    failures = iter([False, True])  # the writer's own first commit goes through, not the next

    def do_commit(dbapi_connection: Any) -> None:
        if next(failures, False):
            error = sqlite3.OperationalError("disk I/O error")
            error.sqlite_errorcode = 10  # SQLITE_IOERR
            raise error
        real_commit(dbapi_connection)

    monkeypatch.setattr(dialect, "do_commit", do_commit)
    # Held at the start of its transaction, the writer lets all twenty queue behind one.
    gate = asyncio.ensure_future(store._write("holding the writer", lambda conn: _sleep(0.2)))
    await asyncio.sleep(0.05)
    results = await asyncio.gather(
        *(store.record_transitions(run_id, 1, [EventChange("lost")]) for run_id in runs),
        return_exceptions=True,
    )
    await gate
    assert sizes[-2:] == [1, 20]
    # The shared commit failed: each of the twenty heard so, and none was stored.
    assert all(isinstance(result, StoreUnavailable) for result in results), results
    assert "disk I/O error" in str(results[0])
    for run_id in runs:
        assert len(await store.read_transitions(run_id)) == 1
    after = await store.record_transitions(runs[0], 1, [EventChange("after")])
    assert after.last_seq == 2


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


async def test_the_callers_of_a_shared_commit_are_woken_together(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = await _runs(store, 20)
    sizes = _batches(monkeypatch)
    loop = asyncio.get_running_loop()
    wakes: list[object] = []
    real_wake = loop.call_soon_threadsafe

    def wake(callback: Any, *args: Any, **kwargs: Any) -> Any:
        wakes.append(callback)
        return real_wake(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon_threadsafe", wake)
    gate = asyncio.ensure_future(store._write("holding the writer", lambda conn: _sleep(0.2)))
    await asyncio.sleep(0.05)
    wakes.clear()
    await asyncio.gather(
        *(store.record_transitions(run_id, 1, [EventChange("e")]) for run_id in runs)
    )
    await gate
    # The twenty writes shared one transaction, and their callers heard of it in one wake-up
    # of the loop (a wake-up per write cost more than the writes); the held write had one.
    assert sizes[-2:] == [1, 20]
    assert len(wakes) == 2, wakes


async def test_a_database_file_replaced_under_the_store_fails_each_write_and_stores_nothing(
    store: SQLStore, sqlite_url: str, tmp_path: Path
) -> None:
    [run_id] = await _runs(store, 1)
    path = Path(sqlite_url.split("///", 1)[1])
    os.replace(path, tmp_path / "moved.db")
    await asyncio.to_thread(path.write_bytes, b"")  # another file under the same name

    results = await asyncio.gather(
        *(store.record_transitions(run_id, 1, [EventChange("e")]) for _ in range(5)),
        return_exceptions=True,
    )

    assert all(isinstance(result, DatabaseGone) for result in results), results
    assert f"the database file {path} was replaced" in str(results[0])
    assert await asyncio.to_thread(path.read_bytes) == b""
