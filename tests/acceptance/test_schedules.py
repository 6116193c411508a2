"""A schedule outlives a worker: two `flowstore worker` processes look after a schedule that
ticks every second; one is SIGKILLed halfway; every tick of the ten seconds is started exactly
once, none missing and none twice, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import timedelta

import pytest

from flowstore import Client, RunStatus
from tests.support.cli import run_flowstore, start_worker


@pytest.mark.slow
async def test_every_tick_starts_once_while_a_worker_is_killed(migrated_url: str) -> None:
    env = {**os.environ, "FLOWSTORE_DATABASE_URL": migrated_url}
    workers = [
        await start_worker("tests.support.queue_flow:flow", migrated_url, "--poll", "0.2", env=env)
        for _ in range(2)
    ]
    try:
        async with Client(migrated_url, poll_seconds=0.05) as client:
            for _ in range(200):  # until the workers stored the definition
                if await client.store.list_graphs("queued"):
                    break
                await asyncio.sleep(0.05)
            inputs = '{"seconds": 0.05, "customer": "tick"}'
            run_flowstore(
                "schedules",
                "add",
                "every-second",
                "queued",
                "--every",
                "1s",
                "--input",
                inputs,
                env=env,
            )
            began = time.monotonic()
            await asyncio.sleep(5.0)
            workers[0].send_signal(signal.SIGKILL)
            await workers[0].wait()
            killed_after = time.monotonic() - began
            await asyncio.sleep(10.0 - (time.monotonic() - began))
            run_flowstore("schedules", "pause", "every-second", env=env)
            shown = run_flowstore("schedules", env=env).stdout
            assert "every-second" in shown and "paused" in shown
            schedule = await client.store.get_schedule("every-second")
            ticks = sorted(await client.store.list_ticks("every-second", limit=100))
            runs = await asyncio.wait_for(
                asyncio.gather(*(client.wait(run_id) for _, run_id in ticks if run_id)), 60
            )
            listed = run_flowstore("schedules", "ticks", "every-second", "--json", env=env)
            assert len(json.loads(listed.stdout)) == min(len(ticks), 20)
            run_flowstore("schedules", "remove", "every-second", env=env)
            assert await client.list_schedules() == []
    finally:
        for worker in workers[1:]:
            worker.send_signal(signal.SIGTERM)
            await worker.wait()
    times = [at for at, _ in ticks]
    first = times[0]
    expected = [first + timedelta(seconds=k) for k in range(len(times))]
    print(
        f"{len(times)} ticks in 10 s, worker killed after {killed_after:.1f} s: "
        f"{len({run.id for run in runs})} runs, skipped {schedule.skipped}"
    )
    assert times == expected  # one a second, none missing
    assert len(times) >= 10
    assert len({run_id for _, run_id in ticks}) == len(ticks) == len(runs)  # none twice
    assert schedule.started == len(ticks) and schedule.skipped == 0
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}
