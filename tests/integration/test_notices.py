"""Workers woken from any process when a run becomes claimable: NOTIFY on PostgreSQL (which
SQLite has not: its workers poll), kept through the loss of the listening connection; and
the claim loop's own timer for the next waiting run that is due."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from flowstore import Client, Engine, RunStatus, Workflow
from flowstore.runtime.worker import ClaimLoop
from flowstore.store import NewRun, RunChange, WorkerId, open_store
from flowstore.store.queue_records import Queue
from flowstore.store.records import Claim, RunId


async def _heard(heard: list[str], graph_hash: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while graph_hash not in heard:
        assert time.monotonic() < deadline, f"{graph_hash!r} not heard; heard {heard}"
        await asyncio.sleep(0.02)


async def test_workers_elsewhere_hear_of_each_run_that_becomes_claimable(
    migrated_url: str,
) -> None:
    listener = await open_store(migrated_url)
    writer = await open_store(migrated_url)
    heard: list[str] = []
    try:
        async with listener.watch_work(heard.append) as told:
            assert told is migrated_url.startswith("postgresql")  # SQLite's workers poll
            await writer.create_run(NewRun("w", "1", "submitted", {}))
            owned = await writer.create_run(NewRun("w", "1", "owned", {}, owner=WorkerId("a")))
            waiting = await writer.create_run(
                NewRun("w", "1", "signalled", {}, owner=WorkerId("a"))
            )
            await writer.record_transitions(
                waiting.id, 1, [RunChange(RunStatus.WAITING, signals=("go",))]
            )
            await writer.send_signal(waiting.id, "go", 1)
            await writer.release_lease(owned.id, WorkerId("a"), 1)
            if told:
                for graph_hash in ("submitted", "signalled", "owned"):
                    await _heard(heard, graph_hash)
                # A run created with its owner executing it is nobody else's work.
                assert heard.count("owned") == 1
            else:
                await asyncio.sleep(0.2)
                assert heard == []
    finally:
        await writer.close()
        await listener.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_a_run_in_a_queue_that_ends_or_waits_frees_its_place_for_workers_everywhere(
    migrated_url: str,
) -> None:
    listener = await open_store(migrated_url)
    writer = await open_store(migrated_url)
    heard: list[str] = []
    owner = WorkerId("a")
    try:
        await writer.set_queue(Queue("q", concurrency=1))
        queued = [
            await writer.create_run(NewRun("w", "1", "h", {}, owner=owner, queue="q"))
            for _ in range(2)
        ]
        free = await writer.create_run(NewRun("w", "1", "h", {}, owner=owner))
        async with listener.watch_work(heard.append) as told:
            assert told
            # Outside a queue, a run that ends frees no place: nobody is woken.
            await writer.record_transitions(free.id, 1, [RunChange(RunStatus.SUCCEEDED)])
            await asyncio.sleep(0.3)
            assert heard == []
            # Numbered by the writer (one statement with the log) and not: both tell.
            await writer.record_transitions(
                queued[0].id, 1, [RunChange(RunStatus.WAITING, signals=("go",))], expected_seq=2
            )
            await _heard(heard, "")
            heard.clear()
            await writer.record_transitions(queued[1].id, 1, [RunChange(RunStatus.FAILED)])
            await _heard(heard, "")
    finally:
        await writer.close()
        await listener.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_notices_come_again_after_the_listening_connection_is_killed(
    migrated_url: str,
) -> None:
    listener = await open_store(migrated_url)
    writer = await open_store(migrated_url)
    admin = create_async_engine(migrated_url)
    heard: list[str] = []
    try:
        async with listener.watch_work(heard.append) as told:
            assert told
            await writer.create_run(NewRun("w", "1", "before", {}))
            await _heard(heard, "before")
            async with admin.connect() as conn:
                killed = await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                    )
                )
                assert killed.scalars().all() == [True]
            # Listening again, it wakes its workers once for what they may have missed.
            await _heard(heard, "")
            await writer.create_run(NewRun("w", "1", "after", {}))
            await _heard(heard, "after")
    finally:
        await admin.dispose()
        await writer.close()
        await listener.close()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_an_idle_engine_is_woken_by_a_client_in_another_process(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = Workflow("woken")

    @flow.node
    async def answer() -> int:
        return 42

    woken: list[str] = []
    heard = Engine._work_heard

    def spy(self: Engine, graph_hash: str) -> None:
        woken.append(graph_hash)
        heard(self, graph_hash)

    monkeypatch.setattr(Engine, "_work_heard", spy)
    # A poll of a minute: only the notice can make the worker look sooner.
    async with (
        Engine(migrated_url, workflows=[flow], poll_seconds=60),
        Client(migrated_url, poll_seconds=0.05) as client,
    ):
        run_id = await client.submit("woken", {})
        run = await asyncio.wait_for(client.wait(run_id), 30)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, 42)
    assert run.graph_hash in woken


class _Sleeping:
    """A store whose one run is due at `due`: claimed only from then."""

    def __init__(self, due: datetime) -> None:
        self.due = due
        self.looks = 0

    async def claim_run(self, *_: Any, **__: Any) -> Claim | None:
        self.looks += 1
        if datetime.now(UTC) < self.due:
            return None
        return Claim(run=None, owner=WorkerId("w"), fencing=1, lease_expires_at=self.due)  # type: ignore[arg-type]

    async def next_wake_at(self, graph_hashes: Collection[str]) -> datetime | None:
        return self.due

    async def list_workers(self) -> list[Any]:
        return []


async def test_an_idle_worker_looks_again_when_the_next_waiting_run_is_due() -> None:
    # Backing off from 10 ms to its 60 s poll, the loop's looks come 2.55 s and 5.11 s after
    # its start: a run due at 2.8 s would be found 2.3 s late, but for the loop's timer.
    store = _Sleeping(datetime.now(UTC) + timedelta(seconds=2.8))
    taken: list[datetime] = []
    loop: ClaimLoop

    async def execute(claim: Claim) -> RunId:
        taken.append(datetime.now(UTC))
        loop.stop()
        return RunId("r")

    loop = ClaimLoop(
        store,  # type: ignore[arg-type]
        WorkerId("w"),
        lambda: ["hash"],
        30.0,
        dead_workers=lambda: store.list_workers(),
        poll_seconds=60,
        execute=execute,
    )
    await asyncio.wait_for(loop.run_forever(), 30)
    [at] = taken
    late = (at - store.due).total_seconds()
    assert 0 <= late < 1.0, f"claimed {late:.3f} s after it was due"
