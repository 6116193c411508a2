"""A worker process for the crash tests: runs, or recovers, one run of a workflow shape.

    python tests/support/crash_worker.py URL SIDE_EFFECTS start|recover SHAPE RUN_ID

Shapes: `chain` (30 nodes in a row), `fanout` (50 nodes, 2 at a time, then a join), `map`
(one node over 20 items, 2 at a time), `loop` (a body repeated while a condition holds).
Every execution appends a label to SIDE_EFFECTS before it returns: the count of executions,
kept outside the database, that the test compares with what the store says.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowstore import Workflow
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine

SIDE_EFFECTS = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("side-effects.log")
HERE = "tests.support.crash_worker"


def _record(label: str) -> None:
    with SIDE_EFFECTS.open("a") as log:
        log.write(f"{label}\n")


async def step(previous: int, ctx: NodeContext) -> int:
    await asyncio.sleep(0.01)
    _record(ctx.node)
    await asyncio.sleep(0.01)
    return previous + 1


async def leaf(n: int, ctx: NodeContext) -> int:
    await asyncio.sleep(0.01)
    _record(ctx.node)
    await asyncio.sleep(0.01)
    return n + 1


async def total(**values: int) -> int:
    return sum(values.values())


async def words(n: int) -> list[str]:
    return [f"w{i}" for i in range(n, n + 20)]


async def shout(item: str) -> str:
    await asyncio.sleep(0.01)
    _record(f"shout[{item}]")
    await asyncio.sleep(0.01)
    return item.upper()


async def count(shout: list[str]) -> int:
    return len(shout)


async def tick(n: int, ctx: NodeContext) -> int:
    await asyncio.sleep(0.02)
    _record(f"tick{ctx.key}")
    return int(ctx.key[1:] or 0) + n


async def check(tick: int, ctx: NodeContext) -> int:
    await asyncio.sleep(0.02)
    _record(f"check{ctx.key}")
    return tick


def _call(name: str) -> str:
    return f"{HERE}:{name}"


def shape(name: str) -> tuple[Workflow, Any]:
    """The workflow of a shape and its expected output."""
    nodes: list[dict[str, Any]]
    config: dict[str, Any] = {}
    if name == "chain":
        nodes = [{"name": "s0", "call": _call("step"), "inputs": {"previous": "n"}}]
        nodes += [
            {"name": f"s{i}", "call": _call("step"), "inputs": {"previous": f"s{i - 1}"}}
            for i in range(1, 30)
        ]
        expected: Any = 30
    elif name == "fanout":
        nodes = [{"name": f"f{i}", "call": _call("leaf"), "inputs": ["n"]} for i in range(50)]
        nodes.append(
            {"name": "join", "call": _call("total"), "inputs": [f"f{i}" for i in range(50)]}
        )
        config = {"max_concurrency": 2}
        expected = 50
    elif name == "map":
        nodes = [
            {"name": "words", "call": _call("words"), "inputs": ["n"]},
            {"name": "shout", "call": _call("shout"), "map": {"over": "words", "concurrency": 2}},
            {"name": "count", "call": _call("count"), "inputs": ["shout"]},
        ]
        expected = 20
    else:
        nodes = [
            {"name": "tick", "call": _call("tick"), "inputs": ["n"]},
            {
                "name": "check",
                "call": _call("check"),
                "inputs": ["tick"],
                "loop": {"back_to": "tick", "while": "check < 12", "max_iterations": 30},
            },
        ]
        expected = 12
    definition = {"name": f"crash_{name}", "inputs": {"n": "int"}, "nodes": nodes, "config": config}
    return Workflow.load(definition), expected


async def main(url: str, mode: str, name: str, run_id: str) -> None:
    flow, _ = shape(name)
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
    asyncio.run(main(sys.argv[1], sys.argv[3], sys.argv[4], sys.argv[5]))
