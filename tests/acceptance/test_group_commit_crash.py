"""SIGKILL while many runs' commits share transactions: nothing a run was told is durable is
lost, and no run's log holds another run's changes."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from flowstore.store import RunQuery, RunStatus, TransitionKind, open_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_kill_during_shared_commits_loses_nothing_told_and_mixes_no_runs(
    migrated_url: str, reaper: list[Any]
) -> None:
    rng = random.Random()
    told: dict[str, int] = defaultdict(lambda: -1)  # the highest number each run was told
    for _ in range(3):
        writer = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.group_writer",
            migrated_url,
            "50",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        reaper.append(writer)
        assert writer.stdout is not None
        assert (await asyncio.wait_for(writer.stdout.readline(), 60)).strip() == b"ready"
        # Killed after a few hundred to a few thousand commits, mid-stream.
        lines = rng.randrange(300, 3000)
        for _ in range(lines):
            line = await asyncio.wait_for(writer.stdout.readline(), 60)
            run_id, number = line.decode().split()
            told[run_id] = max(told[run_id], int(number))
        writer.send_signal(signal.SIGKILL)
        await writer.wait()

    store = await open_store(migrated_url)
    try:
        checked = 0
        for run in await store.list_runs(RunQuery(limit=1000)):
            assert run.status is RunStatus.RUNNING
            log = await store.read_transitions(run.id)
            assert [t.seq for t in log] == list(range(1, len(log) + 1))
            events = [t.payload for t in log if t.kind is TransitionKind.EVENT]
            # Only its own changes, each once, in order, with nothing missing in between...
            assert events == [{"run": run.id, "i": i} for i in range(len(events))]
            # ... and everything it was told is there (a commit in flight may be there too).
            assert len(events) - 1 >= told[run.id], f"run {run.id} lost a told commit"
            checked += 1
        assert checked == 150
        assert sum(number + 1 for number in told.values()) > 900
    finally:
        await store.close()
