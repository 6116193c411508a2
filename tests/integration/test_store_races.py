"""Two processes against one database: claims never double up, sequences never gap."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from flowstore.store import NewRun, RunStatus, StoreSettings, WorkerId, open_store

CLIENT = Path(__file__).resolve().parents[1] / "support" / "store_client.py"
RUNS = 240


async def _two_processes(*argv_per_process: list[str]) -> list[list[Any]]:
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(CLIENT),
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for argv in argv_per_process
    ]
    for process in processes:
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), timeout=60)
        assert ready == b"ready\n", ready
    results = await asyncio.gather(
        *(asyncio.wait_for(p.communicate(b"go\n"), timeout=240) for p in processes)
    )
    outputs = []
    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, stderr.decode()
        outputs.append([json.loads(line) for line in stdout.decode().splitlines()])
    return outputs


@pytest.mark.slow
async def test_runs_raced_by_two_processes_each_go_to_one_owner(database_url: str) -> None:
    store = await open_store(StoreSettings(url=database_url, auto_upgrade=True))
    try:
        created = {
            (await store.create_run(NewRun("race", "1", "h", {"i": i}))).id for i in range(RUNS)
        }
        first, second = await _two_processes(
            ["claim", database_url, "worker-1"], ["claim", database_url, "worker-2"]
        )
        claimed_by_1 = [c["run"] for c in first]
        claimed_by_2 = [c["run"] for c in second]
        print(f"worker-1 claimed {len(claimed_by_1)}, worker-2 claimed {len(claimed_by_2)}")

        assert claimed_by_1 and claimed_by_2, "the two processes did not race"
        every_claim = claimed_by_1 + claimed_by_2
        assert len(every_claim) == len(set(every_claim)) == RUNS
        assert set(every_claim) == created
        assert all(c["fencing"] == 1 for c in first + second)
        owners = {WorkerId("worker-1"): set(claimed_by_1), WorkerId("worker-2"): set(claimed_by_2)}
        for run_id in created:
            run = await store.get_run(run_id)
            assert run.status is RunStatus.RUNNING and run.fencing == 1
            assert run.lease_owner is not None and run_id in owners[run.lease_owner]
    finally:
        await store.close()


@pytest.mark.slow
async def test_sequences_stay_gapless_with_writers_in_two_processes(database_url: str) -> None:
    store = await open_store(StoreSettings(url=database_url, auto_upgrade=True))
    try:
        run = await store.create_run(NewRun("race", "1", "h", {}, owner=WorkerId("shared")))
        first, second = await _two_processes(
            ["append", database_url, run.id, "1", "60"],
            ["append", database_url, run.id, "1", "60"],
        )
        ranges = first + second
        total = sum(size for _, _, size in ranges)
        log = await store.read_transitions(run.id)

        assert [t.seq for t in log] == list(range(1, total + 2))
        covered = sorted(seq for low, high, _ in ranges for seq in range(low, high + 1))
        assert covered == list(range(2, total + 2))
        for low, high, size in ranges:
            assert high - low + 1 == size
            assert len({t.payload["batch"] for t in log[low - 1 : high]}) == 1
        assert (await store.get_run(run.id)).last_seq == total + 1
    finally:
        await store.close()
