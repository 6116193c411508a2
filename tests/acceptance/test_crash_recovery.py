"""Real processes killed with SIGKILL mid-run; a new process recovers the run at once.

Four shapes (a chain of 30, a fan-out of 50 and a join, a map over 20 items, a conditional
loop) on both backends, each killed 8 times at random but seeded moments (64 kills a run of
the suite; the seed is printed, FLOWSTORE_CRASH_SEED replays it). Side effects are counted
outside the database, so a node executing twice cannot hide.
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
from typing import Any

import pytest

from flowstore.store import NodeStatus, RunId, RunStatus, open_store
from tests.support.crash_worker import shape

WORKER = Path(__file__).resolve().parents[1] / "support" / "crash_worker.py"
ROOT = Path(__file__).resolve().parents[2]
KILLS = 8
SEED = int(os.environ.get("FLOWSTORE_CRASH_SEED", random.randrange(1_000_000)))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _label_to_execution(label: str) -> tuple[str, str]:
    """Which node execution a side-effect label belongs to: (node, key)."""
    if label.startswith("shout["):
        return "shout", ""
    for prefix in ("tick", "check"):
        if label.startswith(prefix):
            return prefix, label[len(prefix) :]
    return label, ""


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("shape_name", ["chain", "fanout", "map", "loop"])
async def test_a_run_killed_again_and_again_completes_with_each_node_once(
    migrated_url: str, tmp_path: Path, shape_name: str, reaper: list[Any]
) -> None:
    seed = SEED + ["chain", "fanout", "map", "loop"].index(shape_name)
    print(f"crash seed: {SEED} ({shape_name}: {seed})")
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
            shape_name,
            run_id,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        reaper.append(process)
        mode = "recover"
        # Kill only once this process has done some work, at a random moment after that.
        # The other process writes the file: there is no event to wait on, so poll it.
        while _lines(side_effects) == before and process.returncode is None:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
        if kills < KILLS and process.returncode is None:
            await asyncio.sleep(rng.uniform(0.0, 0.1))
            if process.returncode is None:
                process.kill()
                await process.wait()
                kills += 1
                continue
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, stderr.decode()
        result = json.loads(stdout.decode().splitlines()[-1])
        break

    _, expected = shape(shape_name)
    print(f"kills: {kills}")
    assert kills >= 3
    assert result == {"status": "succeeded", "output": expected}

    store = await open_store(migrated_url)
    try:
        log = await store.read_transitions(RunId(run_id))
        executions = await store.read_node_executions(RunId(run_id))
        run = await store.get_run(RunId(run_id))
    finally:
        await store.close()
    assert run.status is RunStatus.SUCCEEDED
    assert [t.seq for t in log] == list(range(1, len(log) + 1))
    assert all(e.status is NodeStatus.SUCCEEDED for e in executions)
    for execution in executions:  # the log agrees with the node rows
        last = [t for t in log if (t.node, t.key) == (execution.node, execution.key)][-1]
        assert (last.seq, last.status) == (execution.updated_seq, "succeeded")

    recoveries = Counter((t.node, t.key) for t in log if t.status == "recovered")
    counts = Counter(side_effects.read_text().splitlines())
    for label, count in counts.items():
        node, key = _label_to_execution(label)
        # Once; once more only for each kill that caught it running (at least once, never lost).
        assert count <= 1 + recoveries[(node, key)], f"{label} ran {count} times"
    done = {(e.node, e.key) for e in executions}
    assert {_label_to_execution(label) for label in counts} <= done
