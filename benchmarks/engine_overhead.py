"""What durable execution costs per node: chains of no-op nodes and fan-outs of 10 ms nodes.

    python benchmarks/engine_overhead.py [--repeat 3]

Each run goes through `Engine.run` on a fresh SQLite file (WAL, synchronous FULL), in both
durability modes. Chain: N no-op nodes in a row (N = 10, 100, 500); overhead per node is the
total divided by N. Fan-out: N nodes that each sleep 10 ms, then one join (N = 10, 50, 100,
500); the total is compared with the 10 ms a perfect scheduler would take. Every run's output
is checked. Goals on the reference machine: `sync` chain <= 0.5 ms per node, `batched` chain
<= 0.1 ms per node, fan-out of 500 x 10 ms <= 50 ms in total. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowstore import Workflow
from flowstore.runtime.engine import Engine

STEPS = "benchmarks.steps"


def chain(size: int, durability: str) -> Workflow:
    nodes: list[dict[str, Any]] = [{"name": "s0", "call": f"{STEPS}:start", "inputs": ["n"]}]
    nodes += [
        {"name": f"s{i}", "call": f"{STEPS}:step", "inputs": {"previous": f"s{i - 1}"}}
        for i in range(1, size)
    ]
    return Workflow.load(
        {
            "name": f"chain{size}",
            "inputs": {"n": "int"},
            "nodes": nodes,
            "config": {"durability": durability},
        }
    )


def fan_out(size: int, durability: str) -> Workflow:
    nodes: list[dict[str, Any]] = [
        {"name": f"f{i}", "call": f"{STEPS}:nap", "inputs": ["n"]} for i in range(size)
    ]
    nodes.append(
        {
            "name": "join",
            "call": f"{STEPS}:gather",
            "inputs": {f"f{i}": f"f{i}" for i in range(size)},
        }
    )
    return Workflow.load(
        {
            "name": f"fan{size}",
            "inputs": {"n": "int"},
            "nodes": nodes,
            "config": {"durability": durability},
        }
    )


async def timed(path: Path, workflow: Workflow, expected: int) -> float:
    async with Engine(f"sqlite+aiosqlite:///{path}", workers=0) as engine:
        started = time.perf_counter()
        run = await engine.run(workflow, {"n": 0})
        elapsed = time.perf_counter() - started
    assert run.output == expected, (workflow.name, run.status, run.error)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        databases = (Path(scratch) / f"run-{n}.db" for n in range(1_000_000))

        def median(workflow: Workflow, expected: int) -> float:
            workflow.compile()
            return statistics.median(
                asyncio.run(timed(next(databases), workflow, expected)) for _ in range(args.repeat)
            )

        print("chain of N no-op nodes (SQLite WAL, synchronous FULL)")
        print(f"{'durability':<12}{'N':>6}{'total':>12}{'per node':>12}")
        for durability in ("sync", "batched"):
            for size in (10, 100, 500):
                total = median(chain(size, durability), size - 1)
                per_node = total / size * 1000
                print(f"{durability:<12}{size:>6}{total * 1000:>10.1f}ms{per_node:>10.3f}ms")
        print("\nfan-out of N nodes of 10 ms, then a join")
        print(f"{'durability':<12}{'N':>6}{'total':>12}{'over 10 ms':>12}")
        for durability in ("sync", "batched"):
            for size in (10, 50, 100, 500):
                total = median(fan_out(size, durability), size)
                over = (total - 0.01) * 1000
                print(f"{durability:<12}{size:>6}{total * 1000:>10.1f}ms{over:>10.1f}ms")
        print(
            "\ngoals: sync chain <= 0.5 ms/node; batched chain <= 0.1 ms/node; fan-out 500 <= 50 ms"
        )


if __name__ == "__main__":
    main()
