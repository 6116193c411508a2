"""Two `flowstore worker` processes drain 300 runs while their PostgreSQL server is restarted
three times and stopped for 10 s once. Every run succeeds exactly once, none is left stuck,
a worker that exits says why in one line (and is started again), and a node's side effect
repeats only when the node was interrupted mid-execution."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowstore.errors import StoreError
from flowstore.runtime.engine import Engine
from flowstore.store import RunId, RunStatus, StoreSettings, TransitionKind, open_store
from tests.support.cli import start_worker
from tests.support.outage_flow import flow
from tests.support.postgres import start_cluster, start_server, stop_cluster

RUNS = 300
LEASE = 2.0


async def _start_worker(url: str, env: dict[str, str]) -> Any:
    options = ("--concurrency", "4", "--poll", "0.2", "--lease", str(LEASE), "--grace", "0")
    return await start_worker("tests.support.outage_flow:flow", url, *options, env=env)


class Workers:
    """Two worker processes; one that exits is started again (after half a second)."""

    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url, self.env = url, env
        self.processes: list[Any] = []
        self.logs: list[str] = []
        self.exits: list[int] = []
        self._keep = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._keep.set()
        self._tasks = [asyncio.create_task(self._supervise()) for _ in range(2)]

    async def _supervise(self) -> None:
        while self._keep.is_set():
            process = await _start_worker(self.url, self.env)
            self.processes.append(process)
            _, err = await process.communicate()
            self.logs.append(err.decode())
            if self._keep.is_set():
                self.exits.append(process.returncode)
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        self._keep.clear()
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()
        await asyncio.gather(*self._tasks)


async def _succeeded(engine: Engine) -> int:
    try:
        return len(await engine.list_runs(status=RunStatus.SUCCEEDED, limit=RUNS))
    except StoreError:
        return -1  # the server is away


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(600)
async def test_workers_drain_300_runs_through_restarts_and_a_stop(
    tmp_path: Path, postgres_server: str
) -> None:
    del postgres_server  # only its check that PostgreSQL can run here: this test has its own
    # Not in a pytest folder: pytest removes old ones while another session may still run.
    cluster = Path(tempfile.mkdtemp(prefix="flowstore-outage-"))
    effects = tmp_path / "effects.log"
    env = {**os.environ, "FLOWSTORE_TEST_SIDE_EFFECTS": str(effects)}
    url = start_cluster(cluster / "pg")
    store = await open_store(StoreSettings(url=url, auto_upgrade=True))
    await store.close()
    workers = Workers(url, env)
    outages: list[str] = []
    try:
        async with Engine(url, workers=0) as client:
            ids = await asyncio.gather(*(client.submit(flow, {"n": n}) for n in range(RUNS)))
        await workers.start()

        async def chaos() -> None:
            for pause, action in [
                (1.5, "restart"),
                (2.0, "restart"),
                (2.0, "stop"),
                (3, "restart"),
            ]:
                await asyncio.sleep(pause)
                await asyncio.to_thread(stop_cluster, cluster / "pg")
                if action == "stop":
                    outages.append("stopped for 10 s")
                    await asyncio.sleep(10)
                else:
                    outages.append("restarted")
                await asyncio.to_thread(start_server, cluster / "pg")

        started = time.monotonic()
        await chaos()
        async with Engine(url, workers=0) as client:
            for _ in range(1200):
                if await _succeeded(client) == RUNS:
                    break
                await asyncio.sleep(0.25)
            took = time.monotonic() - started
            runs = [await client.get_run(run_id) for run_id in ids]
            logs = {run_id: await client.store.read_transitions(RunId(run_id)) for run_id in ids}
            stuck = await client.list_runs(status=RunStatus.RUNNING)
    finally:
        await workers.stop()
        stop_cluster(cluster / "pg")
        shutil.rmtree(cluster, ignore_errors=True)

    print(
        f"{RUNS} runs through {', '.join(outages)} in {took:.1f} s; "
        f"workers started {len(workers.processes)} times, exits {workers.exits}"
    )
    assert outages == ["restarted", "restarted", "stopped for 10 s", "restarted"]
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * RUNS
    assert [run.output for run in runs] == [n * 2 + 1 for n in range(RUNS)]
    assert stuck == []
    executed = Counter(tuple(line.split()) for line in effects.read_text().splitlines())
    repeated = 0
    for run_id, log in logs.items():
        for node in ("fetch", "work", "store"):
            rows = [t for t in log if t.kind is TransitionKind.NODE and t.node == node]
            statuses = [t.status for t in rows]
            assert statuses.count("succeeded") == 1, (run_id, node, statuses)
            # Every execution was started in the log before it ran, and none after the
            # success: a repeat is a node that was interrupted mid-execution.
            assert executed[(run_id, node)] <= statuses.count("running"), (run_id, node)
            assert statuses.index("succeeded") == len(statuses) - 1, statuses
            repeated += executed[(run_id, node)] - 1
    print(f"node executions repeated after an interruption: {repeated}")
    print(f"worker log lines: {[len(log.splitlines()) for log in workers.logs]}")
    for log in workers.logs:
        assert "Traceback" not in log, log
    for log, code in zip(workers.logs, workers.exits, strict=False):
        if code != 0:
            assert log.strip().splitlines()[-1].startswith("flowstore: error: "), log
