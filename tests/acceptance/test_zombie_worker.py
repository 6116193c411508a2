"""A worker stopped (SIGSTOP) past its lease while another takes the run over, then continued
(SIGCONT): every write of the stale worker is refused, it abandons the run, and the output is
the live worker's."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from flowstore.runtime.engine import Engine
from flowstore.store import RunId, RunStatus
from tests.support.zombie_flow import flow

ROOT = Path(__file__).resolve().parents[2]
LEASE = 1.5


async def _worker(url: str, marker: Path, slow: float) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "FLOWSTORE_TEST_MARKER": str(marker),
        "FLOWSTORE_TEST_SLOW_SECONDS": str(slow),
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowstore",
        "worker",
        "--workflows",
        "tests.support.zombie_flow:flow",
        "--url",
        url,
        "--lease",
        str(LEASE),
        "--poll",
        "0.1",
        "--concurrency",
        "1",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _until(condition: object, seconds: float) -> None:
    async with asyncio.timeout(seconds):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - another process writes it
            await asyncio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_stalled_worker_past_its_lease_writes_nothing(
    migrated_url: str, tmp_path: Path, reaper: list[Any]
) -> None:
    marker = tmp_path / "started-by"
    async with Engine(migrated_url, workers=0) as engine:
        run_id = await engine.submit(flow, {"job": "invoice"})
        stale = await _worker(migrated_url, marker, slow=4 * LEASE)
        reaper.append(stale)
        await _until(marker.exists, 60)
        assert marker.read_text() == str(stale.pid)
        stale.send_signal(signal.SIGSTOP)
        try:
            await asyncio.sleep(LEASE * 2)  # its lease runs out while it cannot heartbeat
            live = await _worker(migrated_url, marker, slow=0)
            reaper.append(live)
            async with asyncio.timeout(60):
                run = await engine.wait(run_id)
            log_before = await engine.store.read_transitions(RunId(run_id))
        finally:
            stale.send_signal(signal.SIGCONT)
        await asyncio.sleep(6 * LEASE)  # the stale worker wakes, finishes its node, tries to write
        for worker in (stale, live):
            worker.send_signal(signal.SIGTERM)
        (_, stale_err), (_, live_err) = [await w.communicate() for w in (stale, live)]

        assert run.status is RunStatus.SUCCEEDED
        assert run.output == f"invoice done by {live.pid}"
        assert await engine.store.read_transitions(RunId(run_id)) == log_before
        claims = [t.payload for t in log_before if t.kind.value == "run" and t.status == "running"]
        assert [c["fencing"] for c in claims] == [1, 2]
        assert stale_err.decode().count(f"gave up run {run_id}") == 1, stale_err.decode()
        assert stale.returncode == 0 and live.returncode == 0, live_err.decode()
