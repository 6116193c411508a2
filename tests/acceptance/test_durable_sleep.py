"""A sleep survives the death of every process: SIGKILL the one that started the run during
its sleep, and a new worker wakes it at the right time, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import datetime

import pytest

from flowstore import Client, RunStatus
from flowstore.store import TransitionKind
from tests.support.cli import ROOT, start_worker

_STARTER = """
import asyncio, sys
from flowstore import Engine
from tests.support.sleep_flow import flow
async def main():
    async with Engine(sys.argv[1], workflows=[flow], workers=0) as engine:
        await engine.run(flow, {"seconds": 2.0}, run_id="napping")
asyncio.run(main())
"""

POLL = 0.2


@pytest.mark.slow
async def test_a_sleep_outlives_a_sigkill_and_wakes_on_time(migrated_url: str) -> None:
    env = {**os.environ, "FLOWSTORE_DATABASE_URL": migrated_url}
    starter = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _STARTER, migrated_url, cwd=ROOT, env=env
    )
    async with Client(migrated_url, poll_seconds=0.05) as client:
        for _ in range(400):  # until the run sleeps: stored waiting, with no owner
            try:
                if (await client.get_run("napping")).status is RunStatus.WAITING:
                    break
            except Exception:  # not created yet (or the schema not there yet)
                pass
            await asyncio.sleep(0.05)
        starter.send_signal(signal.SIGKILL)
        await starter.wait()
        waiting = await client.get_run("napping")
        assert waiting.status is RunStatus.WAITING and waiting.wake_at is not None
        worker = await start_worker(
            "tests.support.sleep_flow:flow", migrated_url, "--poll", str(POLL), env=env
        )
        try:
            run = await asyncio.wait_for(client.wait("napping"), 60)
        finally:
            worker.send_signal(signal.SIGTERM)
            await worker.wait()
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, "RESTED")
        log = await client.store.read_transitions("napping")
    starts = [
        t.created_at
        for t in log
        if t.kind is TransitionKind.NODE and t.node == "nap" and t.status == "running"
    ]
    assert len(starts) == 2  # before the sleep, and after it, in the new worker
    woken: datetime = starts[1]
    late = (woken - waiting.wake_at).total_seconds()
    print(f"woken {late * 1000:.0f} ms after its wake-up time (poll interval {POLL * 1000:.0f} ms)")
    assert late >= 0  # never before its time
    assert late < POLL + 5  # within a poll interval, give or take a loaded machine
