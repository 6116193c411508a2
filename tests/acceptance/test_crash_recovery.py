"""Real processes killed with SIGKILL mid-run; a new process resumes the run at once.

The kill moments are random but seeded; the seed is printed. Side effects are counted outside
the database, so a node executing twice cannot hide.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

from flowstore.store import NodeStatus, RunId, RunStatus, open_store

WORKER = Path(__file__).resolve().parents[1] / "support" / "crash_worker.py"
ROOT = Path(__file__).resolve().parents[2]
NODES = 30


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_chain_killed_again_and_again_completes_with_each_node_once(
    migrated_url: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("FLOWSTORE_CRASH_SEED", random.randrange(1_000_000)))
    print(f"crash seed: {seed}")
    rng = random.Random(seed)
    side_effects = tmp_path / "side-effects.log"
    run_id = str(uuid.uuid4())
    kills = 0
    mode = "start"
    while True:
        before = _lines(side_effects)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            migrated_url,
            str(side_effects),
            mode,
            str(NODES),
            run_id,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        mode = "resume"
        # Kill only once this process has done some work, at a random moment after that.
        # The other process writes the file: there is no event to wait on, so poll it.
        while _lines(side_effects) == before and process.returncode is None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if kills < 8 and process.returncode is None:
            await asyncio.sleep(rng.uniform(0.0, 0.15))
            if process.returncode is None:
                process.kill()
                await process.wait()
                kills += 1
                continue
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, stderr.decode()
        result = json.loads(stdout.decode().splitlines()[-1])
        break

    print(f"kills: {kills}")
    assert kills >= 3
    assert result == {"status": "succeeded", "output": NODES}

    store = await open_store(migrated_url)
    try:
        log = await store.read_transitions(RunId(run_id))
        executions = {n.node: n for n in await store.read_node_executions(RunId(run_id))}
        run = await store.get_run(RunId(run_id))
    finally:
        await store.close()
    assert run.status is RunStatus.SUCCEEDED
    assert [t.seq for t in log] == list(range(1, len(log) + 1))
    assert all(e.status is NodeStatus.SUCCEEDED for e in executions.values())
    assert len(executions) == NODES

    counts = Counter(side_effects.read_text().splitlines())
    recovered = {t.node for t in log if t.status == "recovered"}
    assert set(counts) == set(executions)
    for node, count in counts.items():
        # Once, or once more per kill that caught it running (at least once, never lost).
        assert count == 1 or node in recovered, f"{node} ran {count} times without a crash"
    assert sum(counts.values()) <= NODES + kills
    for node, execution in executions.items():
        last = [t for t in log if t.node == node][-1]
        assert (last.seq, last.status) == (execution.updated_seq, "succeeded")
