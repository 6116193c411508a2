"""What durable execution costs per node: chains of no-op nodes and fan-outs of 10 ms nodes.

    python benchmarks/engine_overhead.py [--repeat 3]

Each run goes through `Engine.run` on a SQLite file (WAL, synchronous FULL), in both
durability modes, measured two ways: "fresh" is the first run of a new engine on a new file
(the median over `--repeat` such pairs), "steady" is the median of `--repeat` runs back to back
on one engine after a first run (an application that has been up for a while). Chain: N no-op
nodes in a row (N = 10, 100, 500); overhead per node is the total divided by N. Fan-out: N
nodes that each sleep 10 ms, then one join (N = 10, 50, 100, 500); the total is compared with
the 10 ms a perfect scheduler would take. Every run's output is checked. Goals on the
reference machine: `sync` chain <= 0.5 ms per node, `batched` chain <= 0.1 ms per node,
fan-out of 500 x 10 ms <= 50 ms in total. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
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


async def timed(path: Path, workflow: Workflow, expected: int, runs: int = 1) -> list[float]:
    """Seconds taken by each of `runs` runs back to back on one new engine and file."""
    elapsed = []
    async with Engine(f"sqlite+aiosqlite:///{path}", workers=0) as engine:
        for _ in range(runs):
            started = time.perf_counter()
            run = await engine.run(workflow, {"n": 0})
            elapsed.append(time.perf_counter() - started)
            assert run.output == expected, (workflow.name, run.status, run.error)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.repeat = 1
    with tempfile.TemporaryDirectory() as scratch:
        databases = (Path(scratch) / f"run-{n}.db" for n in range(1_000_000))

        def medians(workflow: Workflow, expected: int) -> tuple[float, float]:
            """(fresh, steady) seconds; see the module's docstring."""
            workflow.compile()
            fresh = [
                asyncio.run(timed(next(databases), workflow, expected))[0]
                for _ in range(args.repeat)
            ]
            steady = asyncio.run(timed(next(databases), workflow, expected, args.repeat + 1))
            return statistics.median(fresh), statistics.median(steady[1:])

        print("chain of N no-op nodes (SQLite WAL, synchronous FULL), per node")
        print(f"{'durability':<12}{'N':>6}{'fresh':>12}{'steady':>12}")
        for durability in ("sync", "batched"):
            for size in (10, 100, 500):
                fresh, steady = medians(chain(size, durability), size - 1)
                print(
                    f"{durability:<12}{size:>6}{fresh / size * 1000:>10.3f}ms"
                    f"{steady / size * 1000:>10.3f}ms"
                )
        print("\nfan-out of N nodes of 10 ms, then a join: total")
        print(f"{'durability':<12}{'N':>6}{'fresh':>12}{'steady':>12}")
        for durability in ("sync", "batched"):
            for size in (10, 50, 100, 500):
                fresh, steady = medians(fan_out(size, durability), size)
                print(f"{durability:<12}{size:>6}{fresh * 1000:>10.1f}ms{steady * 1000:>10.1f}ms")
        print(
            "\ngoals: sync chain <= 0.5 ms/node; batched chain <= 0.1 ms/node; fan-out 500 <= 50 ms"
        )


if __name__ == "__main__":
    main()
