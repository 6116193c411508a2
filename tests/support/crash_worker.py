"""A worker process for the crash tests: runs or resumes one run of a long chain.

    python tests/support/crash_worker.py URL SIDE_EFFECTS start|resume NODES RUN_ID

Every node appends its name to SIDE_EFFECTS before it returns: the count of executions, kept
outside the database, that the test compares with what the store says.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowstore import Workflow
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine

SIDE_EFFECTS = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("side-effects.log")


async def step(previous: int, ctx: NodeContext) -> int:
    await asyncio.sleep(0.01)
    with SIDE_EFFECTS.open("a") as log:
        log.write(f"{ctx.node}\n")
    await asyncio.sleep(0.01)
    return previous + 1


def chain(nodes: int) -> Workflow:
    call = "tests.support.crash_worker:step"
    steps = [{"name": "s0", "call": call, "inputs": {"previous": "n"}}]
    steps += [
        {"name": f"s{i}", "call": call, "inputs": {"previous": f"s{i - 1}"}}
        for i in range(1, nodes)
    ]
    return Workflow.load({"name": "crash_chain", "inputs": {"n": "int"}, "nodes": steps})


async def main(url: str, mode: str, nodes: int, run_id: str) -> None:
    flow = chain(nodes)
    # A new process recovers the run by itself: its claim loop takes over the runs of dead
    # processes on this host at once.
    workers = 0 if mode == "start" else 1
    async with Engine(url, workflows=[flow], lease_seconds=60, workers=workers) as engine:
        if mode == "start":
            run = await engine.run(flow, {"n": 0}, run_id=run_id)
        else:
            run = await engine.wait(run_id)
    print(json.dumps({"status": run.status.value, "output": run.output}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
