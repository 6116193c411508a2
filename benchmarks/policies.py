"""What caching and telemetry cost: a cache hit per node, and metrics plus tracing on a chain.

    python benchmarks/policies.py [--repeat 5]

Cache: a chain of 200 nodes that each have a cache policy, run once to fill the cache, then
again so every node is a hit; beside it the same chain without a cache policy. The cost of a
hit is the difference per node (the lookup and the validation of the stored output, in place
of the call). Each hit reads its entry from the database: with `sync` durability the lookup
rides with the commit of the node's start, with `batched` it is a read on the event loop's
SQLite connection. Telemetry: a chain of 500 no-op nodes with metrics and spans stored, and
without. Each on one engine and SQLite file (WAL, synchronous FULL) after a first run, in both
durability modes, median of `--repeat` runs; every run's output is checked. Goals: a cache hit
<= 0.2 ms per node; metrics and tracing together add <= 20% to the chain. Printed, never
asserted.
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


def chain(size: int, durability: str, *, cached: bool) -> Workflow:
    extra: dict[str, Any] = {"cache": {}} if cached else {}
    nodes: list[dict[str, Any]] = [
        {"name": "s0", "call": f"{STEPS}:start", "inputs": ["n"], **extra}
    ]
    nodes += [
        {"name": f"s{i}", "call": f"{STEPS}:step", "inputs": {"previous": f"s{i - 1}"}, **extra}
        for i in range(1, size)
    ]
    name = f"chain{size}{'c' if cached else ''}{durability}"
    return Workflow.load(
        {"name": name, "inputs": {"n": "int"}, "nodes": nodes, "config": {"durability": durability}}
    )


async def per_node(
    path: Path, workflow: Workflow, size: int, repeat: int, *, telemetry: bool = True
) -> float:
    """Median seconds per node over `repeat` runs, after a first run that is not counted."""
    times = []
    async with Engine(f"sqlite+aiosqlite:///{path}", workers=0, telemetry=telemetry) as engine:
        for index in range(repeat + 1):
            started = time.perf_counter()
            run = await engine.run(workflow, {"n": 0})
            if index:
                times.append((time.perf_counter() - started) / size)
            assert run.output == size - 1, (workflow.name, run.status, run.error)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.repeat = 1
    with tempfile.TemporaryDirectory() as scratch:
        paths = (Path(scratch) / f"run-{n}.db" for n in range(1_000_000))
        print("cache hit, chain of 200 (SQLite WAL, synchronous FULL), per node")
        print(f"{'durability':<12}{'no cache':>12}{'all hits':>12}{'hit costs':>12}")
        for durability in ("sync", "batched"):
            plain = asyncio.run(
                per_node(next(paths), chain(200, durability, cached=False), 200, args.repeat)
            )
            hits = asyncio.run(
                per_node(next(paths), chain(200, durability, cached=True), 200, args.repeat)
            )
            print(
                f"{durability:<12}{plain * 1000:>10.3f}ms{hits * 1000:>10.3f}ms"
                f"{(hits - plain) * 1000:>10.3f}ms"
            )
        print("\ntelemetry (metrics and spans), chain of 500, per node")
        print(f"{'durability':<12}{'off':>12}{'on':>12}{'added':>10}")
        for durability in ("sync", "batched"):
            workflow = chain(500, durability, cached=False)
            off, on = [], []
            for _ in range(3):  # alternate, so a noisy moment does not land on one side only
                off.append(
                    asyncio.run(per_node(next(paths), workflow, 500, args.repeat, telemetry=False))
                )
                on.append(asyncio.run(per_node(next(paths), workflow, 500, args.repeat)))
            quiet, measured = statistics.median(off), statistics.median(on)
            print(
                f"{durability:<12}{quiet * 1000:>10.3f}ms{measured * 1000:>10.3f}ms"
                f"{(measured / quiet - 1) * 100:>9.0f}%"
            )
        print("\ngoals: cache hit <= 0.2 ms per node; metrics and tracing add <= 20%")


if __name__ == "__main__":
    main()
