"""The SQLite threads: whole transactions, survive failures and cancelled callers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Connection

from flowstore.store import EventChange, NewRun, WorkerId, open_store
from flowstore.store.sql import SQLStore
from flowstore.store.sqlite_threads import BUSY, LoopConnection


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


async def test_a_cache_lookup_reads_on_the_loop_without_waiting_for_the_threads(
    sqlite_url: str,
) -> None:
    store: SQLStore = await open_store(sqlite_url)
    try:
        await store.put_cached("k", workflow="w", node="n", value={"answer": 42})
        first = await store.get_cached("k")  # opens the loop's connection on a thread
        for _ in range(100):
            if store._here is not None and store._here._conn is not None:
                break
            await asyncio.sleep(0.01)
        assert store._readers is not None
        release = threading.Event()
        stalls = [
            asyncio.create_task(store._readers.run(lambda _conn: release.wait(10)))
            for _ in range(2)
        ]
        await asyncio.sleep(0.05)  # both reader threads are held now
        second = await store.get_cached("k")
        missing = await store.get_cached("other")
        assert not any(stall.done() for stall in stalls), "the lookup waited for a reader"
        release.set()
        await asyncio.gather(*stalls)
        assert first is not None and second is not None and missing is None
        assert second.value == first.value == {"answer": 42}
    finally:
        await store.close()


def test_a_loop_read_returns_busy_at_once_when_sqlite_is_locked(tmp_path: Path) -> None:
    # A rollback journal, where a writer's EXCLUSIVE lock keeps readers out (WAL rarely does).
    path = tmp_path / "locked.db"
    engine = create_engine(f"sqlite+pysqlite:///{path}", connect_args={"timeout": 30})
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    reads = LoopConnection(engine)

    async def main() -> None:
        assert reads.read(_count) is BUSY  # not open yet: opens on a thread
        for _ in range(100):
            if reads._conn is not None:
                break
            await asyncio.sleep(0.01)
        assert reads.read(_count) == 1
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        assert reads.read(_count) is BUSY
        assert time.monotonic() - started < 5, "waited for the lock (timeout 30 s)"
        locker.execute("COMMIT")
        locker.close()
        assert reads.read(_count) == 1
        reads.close()

    try:
        asyncio.run(main())
    finally:
        engine.dispose()


def _count(conn: Connection) -> int:
    return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


async def test_a_store_opens_at_once_while_another_process_holds_the_write_lock(
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
        opened_in = time.monotonic() - started
    finally:
        locker.execute("COMMIT")
        locker.close()
    try:
        # The rehearsal of the run path is skipped rather than waiting out the 10 s busy
        # timeout; the generous bound only tells the two apart on a slow machine.
        assert opened_in < 5, f"opening waited {opened_in:.1f} s for the lock"
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        await store.record_transitions(run.id, 1, [EventChange("after")])
        assert [t.seq for t in await store.read_transitions(run.id)] == [1, 2]
        assert (await store.get_run(run.id)).last_seq == 2
    finally:
        await store.close()


async def test_the_wal_is_written_out_at_open_and_loses_nothing_to_a_concurrent_writer(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wal.db"
    url = f"sqlite+aiosqlite:///{path}"
    writer: SQLStore = await open_store(url)
    wal = Path(f"{path}-wal")
    assert _size(wal) == 32 + 1000 * (24 + 4096)  # up to the autocheckpoint
    try:
        run = await writer.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))

        async def write() -> None:
            for i in range(300):
                change = EventChange("e", {"i": i})  # half of them on the loop's connection
                await writer.record_transitions(run.id, 1, [change], waiting=i % 2 == 0)

        async def reopen() -> None:  # each opening extends the WAL, when the lock is free
            for _ in range(5):
                other: SQLStore = await open_store(url)
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


async def test_a_commit_waits_on_the_writer_thread_not_the_loop_while_the_lock_is_held(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'held.db'}"
    store: SQLStore = await open_store(url)
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        await store.record_transitions(run.id, 1, [EventChange("before")], waiting=True)  # here
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
        await store.record_transitions(run.id, 1, [EventChange("after")], waiting=True)
        waited = time.monotonic() - started
        ticking.cancel()
        locker.close()
        assert waited >= 0.25, "the commit did not wait for the lock"
        assert ticks >= 10, f"the loop was held while the commit waited ({ticks} ticks)"
        log = await store.read_transitions(run.id)
        assert [(t.seq, t.name) for t in log[1:]] == [(2, "before"), (3, "after")]
    finally:
        await store.close()


async def test_commits_on_the_loop_leave_the_wal_to_the_writer_thread_to_checkpoint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "busy.db"
    store: SQLStore = await open_store(f"sqlite+aiosqlite:///{path}")
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        for i in range(3000):
            change = EventChange("e", {"i": i, "pad": "x" * 500})
            await store.record_transitions(run.id, 1, [change], waiting=True)
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


class _Clock:
    """A clock that moves `step` seconds each time it is read: a commit takes `step`."""

    def __init__(self) -> None:
        self.now, self.step = 0.0, 0.0001

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_slow_commits_on_the_loop_send_the_next_ones_to_the_threads(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+pysqlite:///{tmp_path / 'slow.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
    clock = _Clock()
    here = LoopConnection(engine, slow_pause_s=60, checkpoint_every=3, clock=clock)

    def insert(conn: Connection) -> None:
        conn.execute(text("INSERT INTO t VALUES (1)"))

    async def main() -> None:
        await here.open()
        for _ in range(4):
            assert here.write(insert) is None and here.writes_ok
        assert here.checkpoint_due() and not here.checkpoint_due()
        clock.step = 0.05  # one stalled commit among quick ones: still fine here
        assert here.write(insert) is None
        clock.step = 0.0001
        assert here.writes_ok
        clock.step = 0.005  # a disk slower than 2 ms a commit, commit after commit
        for _ in range(5):
            assert here.write(insert) is None
        clock.step = 0.0001
        assert not here.writes_ok, "slow commits did not send writes to the threads"
        clock.now += 61
        assert here.writes_ok, "writes here did not resume after the pause"
        assert here.read(_count) == 10
        here.close()

    try:
        asyncio.run(main())
    finally:
        engine.dispose()


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


async def test_a_commit_with_a_large_output_never_holds_the_event_loop(sqlite_url: str) -> None:
    from flowstore.store import NodeChange, NodeStatus

    store: SQLStore = await open_store(sqlite_url)
    try:
        assert store._here is not None
        on_loop = []
        real = store._here.write

        def write(work: Any) -> Any:
            on_loop.append(work)
            return real(work)

        store._here.write = write  # type: ignore[method-assign]
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        small = store.encode("x" * 100, what="a small output")
        large = store.encode("x" * 200_000, what="a large output")
        await store.record_transitions(
            run.id, 1, [NodeChange("a", NodeStatus.SUCCEEDED, output=small)], waiting=True
        )
        assert len(on_loop) == 1
        await store.record_transitions(
            run.id, 1, [NodeChange("b", NodeStatus.SUCCEEDED, output=large)], waiting=True
        )
        assert len(on_loop) == 1  # the writer thread took it
        outputs = await store.read_outputs(run.id)
        assert len(outputs[("b", "")]) == 200_000
    finally:
        await store.close()
