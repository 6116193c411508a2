"""Two `flowstore worker` processes drain 200 submitted runs: each runs exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowstore.runtime.engine import Engine
from flowstore.store import RunStatus
from tests.support.drain_flow import flow

ROOT = Path(__file__).resolve().parents[2]
RUNS = 200


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_two_worker_processes_drain_200_runs_each_once(
    migrated_url: str, tmp_path: Path, reaper: list[Any]
) -> None:
    side_effects = tmp_path / "effects.log"
    env = {**os.environ, "FLOWSTORE_TEST_SIDE_EFFECTS": str(side_effects)}
    async with Engine(migrated_url, workers=0) as engine:
        workers = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "flowstore",
                "worker",
                "--workflows",
                "tests.support.drain_flow:flow",
                "--url",
                migrated_url,
                "--concurrency",
                "4",
                "--poll",
                "0.2",
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(2)
        ]
        reaper.extend(workers)
        try:
            async with asyncio.timeout(300):
                # Both workers are up before the runs arrive, and the runs arrive at once,
                # each taking 20 ms: a worker polling every 0.2 s finds a queue, not one
                # run at a time that the other, already awake, worker takes first.
                for _ in range(6000):
                    if len(await engine.store.list_workers()) == 3:  # with this engine
                        break
                    await asyncio.sleep(0.05)
                ids = await asyncio.gather(*(engine.submit(flow, {"n": i}) for i in range(RUNS)))
                runs = [await engine.wait(run_id) for run_id in ids]
        finally:
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            outputs = [await worker.communicate() for worker in workers]
        for worker, (_, stderr) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, stderr.decode()
            assert stderr.decode().splitlines()[-1] == "worker stopped"

        assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * RUNS
        assert [run.output for run in runs] == [2 * i + 1 for i in range(RUNS)]
        counts = Counter(side_effects.read_text().splitlines())
        assert len(counts) == 2 * RUNS
        assert set(counts.values()) == {1}
        owners = Counter()
        for run_id in ids:
            claims = [
                t.payload["owner"]
                for t in await engine.store.read_transitions(run_id)
                if t.kind.value == "run" and t.status == "running"
            ]
            assert len(claims) == 1
            owners[claims[0]] += 1
        print(f"runs per worker: {sorted(owners.values())}")
        assert len(owners) == 2, "both workers took runs"


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_run_in_another_process_is_cancelled_from_the_command_line(
    migrated_url: str, tmp_path: Path, reaper: list[Any]
) -> None:
    from tests.support.zombie_flow import flow as slow_flow

    marker = tmp_path / "started-by"
    env = {
        **os.environ,
        "FLOWSTORE_TEST_MARKER": str(marker),
        "FLOWSTORE_TEST_SLOW_SECONDS": "120",
        "FLOWSTORE_DATABASE_URL": migrated_url,
    }
    async with Engine(migrated_url, workers=0) as engine:
        run_id = await engine.submit(slow_flow, {"job": "report"})
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flowstore",
            "worker",
            "--workflows",
            "tests.support.zombie_flow:flow",
            "--poll",
            "0.1",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(60):
                while not marker.exists():  # noqa: ASYNC110 - the worker process writes it
                    await asyncio.sleep(0.05)
            cancel = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "flowstore",
                "cancel",
                run_id,
                cwd=ROOT,
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await cancel.communicate()
            assert cancel.returncode == 0, stderr.decode()
            assert "cancellation requested" in stdout.decode()
            async with asyncio.timeout(20):
                run = await engine.wait(run_id)
        finally:
            worker.send_signal(signal.SIGTERM)
            await worker.communicate()
        assert run.status is RunStatus.CANCELLED
        log = await engine.store.read_transitions(run_id)
        assert [(t.node, t.status) for t in log[-2:]] == [
            ("work", "cancelled"),
            (None, "cancelled"),
        ]
