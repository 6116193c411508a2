"""The SQLite threads: whole transactions, survive failures and cancelled callers."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

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


async def test_a_store_opens_and_warms_up_at_once_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}"
    first: SQLStore = await open_store(url)  # creates the schema
    await first.close()
    locker = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # the write lock, as another process's writer holds it
    try:
        started = time.monotonic()
        store: SQLStore = await open_store(url)
        await store.warm_up()  # as an engine does
        opened_in = time.monotonic() - started
    finally:
        locker.execute("COMMIT")
        locker.close()
    try:
        # The warm-up's writes are skipped rather than waiting out the 10 s busy timeout;
        # the generous bound only tells the two apart on a slow machine.
        assert opened_in < 5, f"opening waited {opened_in:.1f} s for the lock"
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        await store.record_transitions(run.id, 1, [EventChange("after")])
        assert [t.seq for t in await store.read_transitions(run.id)] == [1, 2]
        assert (await store.get_run(run.id)).last_seq == 2
    finally:
        await store.close()


async def test_the_wal_is_written_out_by_the_warm_up_and_loses_nothing_to_a_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wal.db"
    url = f"sqlite+aiosqlite:///{path}"
    writer: SQLStore = await open_store(url)
    wal = Path(f"{path}-wal")
    working_size = 32 + 1000 * (24 + 4096)  # up to the autocheckpoint
    assert (_size(wal) or 0) < working_size / 2, "opening a store wrote the WAL out"
    await writer.warm_up()
    assert _size(wal) == working_size
    try:
        run = await writer.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))

        async def write() -> None:
            for i in range(300):
                change = EventChange("e", {"i": i})
                await writer.record_transitions(run.id, 1, [change])

        async def reopen() -> None:  # each warm-up extends the WAL, when the lock is free
            for _ in range(5):
                other: SQLStore = await open_store(url)
                await other.warm_up()
                await other.close()

        await asyncio.gather(write(), reopen())
    finally:
        await writer.close()
    assert _size(wal) is None, "the last connection to close removes the WAL"
    reopened: SQLStore = await open_store(url)
    try:
        log = await reopened.read_transitions(run.id)
        assert [t.seq for t in log] == list(range(1, 302))
        assert [t.payload for t in log[1:]] == [{"i": i} for i in range(300)]
    finally:
        await reopened.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        check.close()


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.exists() else None


async def test_the_warm_up_leaves_the_wal_alone_on_a_disk_short_of_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "small.db"
    store: SQLStore = await open_store(f"sqlite+aiosqlite:///{path}")
    try:
        real = shutil.disk_usage
        small = real(tmp_path)._replace(free=100 * 2**20)  # 100 MB free
        monkeypatch.setattr(shutil, "disk_usage", lambda path: small)
        before = _size(Path(f"{path}-wal"))
        await store.warm_up()
        assert _size(Path(f"{path}-wal")) == before
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        assert (await store.get_run(run.id)).last_seq == 1
    finally:
        await store.close()


async def test_a_commit_waits_for_the_lock_on_the_writer_thread_not_on_the_loop(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'held.db'}"
    store: SQLStore = await open_store(url)
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        await store.record_transitions(run.id, 1, [EventChange("before")])
        locker = sqlite3.connect(
            tmp_path / "held.db", isolation_level=None, check_same_thread=False
        )
        locker.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        threading.Timer(0.3, lambda: locker.execute("COMMIT")).start()
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(tick())
        started = time.monotonic()
        await store.record_transitions(run.id, 1, [EventChange("after")])
        waited = time.monotonic() - started
        ticking.cancel()
        locker.close()
        assert waited >= 0.25, "the commit did not wait for the lock"
        assert ticks >= 10, f"the loop was held while the commit waited ({ticks} ticks)"
        log = await store.read_transitions(run.id)
        assert [(t.seq, t.name) for t in log[1:]] == [(2, "before"), (3, "after")]
    finally:
        await store.close()


async def test_the_wal_stays_near_its_working_size_through_thousands_of_commits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    store: SQLStore = await open_store(f"sqlite+aiosqlite:///{path}")
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        for i in range(3000):
            change = EventChange("e", {"i": i, "pad": "x" * 500})
            await store.record_transitions(run.id, 1, [change])
        # 3,000 commits write over 10,000 pages: without checkpoints the WAL would grow past
        # its working size (1,000 pages) several times over. A commit that comes in while a
        # checkpoint finishes may add a few pages past it.
        assert (_size(Path(f"{path}-wal")) or 0) <= 1.5 * (32 + 1000 * (24 + 4096))
        log = await store.read_transitions(run.id)
        assert [t.payload["i"] for t in log[1:]] == list(range(3000))
    finally:
        await store.close()
    check = sqlite3.connect(path)
    try:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        check.close()


async def test_a_thread_that_cannot_connect_answers_with_the_error_and_recovers(
    tmp_path: Path,
) -> None:
    from flowstore.store.sqlite_threads import SQLiteThreads

    engine = create_engine(f"sqlite:///{tmp_path / 'x.db'}")
    real_connect = engine.connect
    failing = {"on": True}

    def connect() -> Connection:
        if failing["on"]:
            raise OSError("unable to open database file")
        return real_connect()

    engine.connect = connect  # type: ignore[method-assign]
    threads = SQLiteThreads(engine, threads=1, begin="BEGIN", name="t", busy_timeout_ms=100)
    try:
        await threads.connected()

        def one(conn: Connection) -> int:
            return int(conn.execute(text("SELECT 1")).scalar_one())

        for _ in range(2):  # every request is answered, none hangs
            async with asyncio.timeout(5):
                with pytest.raises(OSError, match="unable to open"):
                    await threads.run(one)
        failing["on"] = False
        async with asyncio.timeout(5):
            assert await threads.run(one) == 1
        assert threads.idle
    finally:
        await threads.close()
        engine.dispose()
