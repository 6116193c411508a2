"""Schedules in SQL: each tick started once by engines that race for it, missed ticks skipped
or caught up, pause, resume and removal, runs in queues, and a commit that fails or lands
unseen, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowstore import (
    Client,
    Engine,
    InvalidValue,
    Queue,
    QueueNotFound,
    RunStatus,
    ScheduleNotFound,
    StoreUnavailable,
    Workflow,
)
from tests.support.faults import Fault


def ticker() -> Workflow:
    flow = Workflow("ticker")

    @flow.node
    async def note(label: str) -> str:
        return label

    return flow


async def settle(engine: Engine, name: str, *, ticks: int, within: float = 20.0) -> Any:
    """The schedule once it has started `ticks` ticks (and their runs have ended)."""
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        stored = await engine.store.get_schedule(name)
        if stored.started >= ticks:
            for run in await engine.list_runs():
                await asyncio.wait_for(engine.wait(run.id), within)
            return stored
        await asyncio.sleep(0.05)
    raise AssertionError(f"schedule {name} started {stored.started} ticks, not {ticks}")


async def test_engines_racing_for_each_tick_start_it_once(migrated_url: str) -> None:
    flow = ticker()
    async with contextlib.AsyncExitStack() as stack:
        engines = [
            await stack.enter_async_context(
                Engine(migrated_url, workflows=[flow], workers=2, poll_seconds=0.05)
            )
            for _ in range(3)
        ]
        first = await engines[0].schedule(flow, "often", every=0.2, inputs={"label": "x"})
        await settle(engines[1], "often", ticks=10)
        await engines[2].pause_schedule("often")
        stored = await settle(engines[0], "often", ticks=10)  # and every run it started ended
        ticks = sorted(await engines[0].store.list_ticks("often", limit=1000))
        runs = await engines[0].list_runs(limit=1000)
    times = [at for at, _ in ticks]
    assert times[0] == first.next_at
    # One after another, none missing, none twice.
    assert times == [first.next_at + k * timedelta(seconds=0.2) for k in range(len(times))]
    assert len({run_id for _, run_id in ticks}) == len(ticks) == len(runs) == stored.started
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}
    assert stored.skipped == 0


@pytest.mark.parametrize(("missed", "started", "skipped"), [("skip", 1, 10), ("catch_up", 4, 7)])
async def test_ticks_missed_while_no_worker_ran_are_skipped_or_caught_up(
    migrated_url: str, missed: str, started: int, skipped: int
) -> None:
    flow = ticker()
    async with Engine(migrated_url, workflows=[flow], workers=0) as offline:
        await offline.schedule(
            flow,
            "daily-ish",
            every=timedelta(seconds=10),
            inputs={"label": "late"},
            start_at=datetime.now(UTC) - timedelta(seconds=105),  # 11 ticks due, one on time
            missed=missed,  # type: ignore[arg-type]
            catch_up_limit=3,
            grace_seconds=7,
        )
    async with Engine(migrated_url, workflows=[flow], workers=1, poll_seconds=0.05) as engine:
        stored = await settle(engine, "daily-ish", ticks=started)
        await asyncio.sleep(0.2)  # nothing more starts
        stored = await engine.store.get_schedule("daily-ish")
        runs = await engine.list_runs()
    assert (stored.started, stored.skipped, len(runs)) == (started, skipped, started)
    assert stored.next_at > datetime.now(UTC)


async def test_a_paused_schedule_starts_nothing_and_resumes_from_now(migrated_url: str) -> None:
    flow = ticker()
    async with Engine(migrated_url, workflows=[flow], workers=1, poll_seconds=0.05) as engine:
        await engine.schedule(flow, "p", every=0.2, inputs={"label": "p"})
        await settle(engine, "p", ticks=2)
        paused = await engine.pause_schedule("p")
        assert paused.paused_at is not None
        await asyncio.sleep(0.6)
        during = (await engine.store.get_schedule("p")).started
        resumed = await engine.resume_schedule("p")
        assert resumed.paused_at is None and resumed.next_at >= datetime.now(UTC) - timedelta(
            seconds=0.2
        )
        await settle(engine, "p", ticks=during + 2)
        stored = await engine.store.get_schedule("p")
        assert stored.skipped == 0  # the ticks while it was paused are not counted missed
        await engine.remove_schedule("p")
        with pytest.raises(ScheduleNotFound, match=r"no schedule is named 'p' \(stored: none\)"):
            await engine.store.get_schedule("p")
        assert len(await engine.list_runs()) >= during + 2  # its runs stay


async def test_declaring_a_schedule_at_every_start_keeps_its_beat(migrated_url: str) -> None:
    flow = ticker()
    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        first = await engine.schedule(flow, "nightly", every=3600, inputs={"label": "n"})
        again = await engine.schedule(flow, "nightly", every=3600, inputs={"label": "m"})
        assert (again.next_at, again.created_at) == (first.next_at, first.created_at)
        assert again.inputs == {"label": "m"}
        moved = await engine.schedule(flow, "nightly", every=60, inputs={"label": "m"})
        assert moved.next_at != first.next_at


async def test_scheduled_runs_wait_their_turn_in_a_queue(migrated_url: str) -> None:
    flow = ticker()
    async with Engine(
        migrated_url,
        workflows=[flow],
        workers=2,
        poll_seconds=0.05,
        queues=[Queue("q", concurrency=1)],
    ) as engine:
        await engine.schedule(flow, "queued", every=0.2, inputs={"label": "q"}, queue="q")
        await settle(engine, "queued", ticks=3)
        runs = await engine.list_runs()
    assert {run.queue for run in runs} == {"q"}


async def test_schedule_mistakes_are_refused_and_nothing_is_stored(migrated_url: str) -> None:
    flow = ticker()
    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        with pytest.raises(InvalidValue, match="label"):
            await engine.schedule(flow, "bad", every=1, inputs={})
        with pytest.raises(QueueNotFound, match="no queue is named 'nope'"):
            await engine.schedule(flow, "bad", every=1, inputs={"label": "x"}, queue="nope")
        assert await engine.list_schedules() == []
    async with Client(migrated_url) as client:
        with pytest.raises(Exception, match="no definition of workflow 'unknown' is stored"):
            await client.schedule("unknown", "bad", every=1)


async def test_a_tick_whose_commit_fails_or_lands_unseen_starts_once(migrated_url: str) -> None:
    flow = ticker()
    async with Engine(migrated_url, workflows=[flow], workers=1, poll_seconds=0.05) as engine:
        # The first attempt fails before anything is written; the second lands, but the
        # worker hears it failed (a connection dropped after the commit).
        Fault(engine.store, "fire_schedule", {1}, StoreUnavailable("the database went away"))
        fired = engine.store.fire_schedule
        calls = 0

        async def lands_unseen(*args: Any, **kwargs: Any) -> bool:
            nonlocal calls
            calls += 1
            done: bool = await fired(*args, **kwargs)
            if calls == 2:
                raise StoreUnavailable("the connection dropped after the commit")
            return done

        engine.store.fire_schedule = lands_unseen  # type: ignore[method-assign]
        first = await engine.schedule(flow, "flaky", every=0.3, inputs={"label": "f"})
        stored = await settle(engine, "flaky", ticks=4)
        ticks = sorted(await engine.store.list_ticks("flaky", limit=100))
    times = [at for at, _ in ticks]
    assert times == [first.next_at + k * timedelta(seconds=0.3) for k in range(len(times))]
    assert stored.started == len(ticks) and calls >= 4
