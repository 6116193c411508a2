"""Many runs at once in one process: steps per second, run latency and memory as C grows.

    python benchmarks/concurrency.py [--url URL] [--runs 1,10,100,1000] [--shapes chain,fan]
                                     [--durability sync,batched] [--repeat 2]

C runs are started at once with `Engine.run` on one engine and awaited together. Two shapes:
a chain of 10 no-op nodes, and a fan-out of 50 no-op nodes and a join (51 steps). For each
(shape, durability, C): steps per second over the whole batch (C x steps / wall time), the
p50 and p99 of the runs' own times (from `Engine.run`'s call to its return), and the
process's peak RSS. Each figure is the median of `--repeat` batches, each in a fresh process
on a fresh database (a new SQLite file, or a new schema on `--url`), so one batch's memory or
cache does not help the next. Every run's output is checked.

Goals on the reference machine (printed, never asserted): SQLite, C = 100, `sync` at least
10,000 steps/s and `batched` at least 20,000; C = 1,000 no slower per step than C = 100.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

STEPS = "benchmarks.steps"
SHAPES = {"chain": 10, "fan": 51}


def workflow(shape: str, durability: str) -> Any:
    from flowstore import Workflow

    nodes: list[dict[str, Any]]
    if shape == "chain":
        nodes = [{"name": "s0", "call": f"{STEPS}:start", "inputs": ["n"]}]
        nodes += [
            {"name": f"s{i}", "call": f"{STEPS}:step", "inputs": {"previous": f"s{i - 1}"}}
            for i in range(1, SHAPES["chain"])
        ]
    else:
        width = SHAPES["fan"] - 1
        nodes = [{"name": f"f{i}", "call": f"{STEPS}:start", "inputs": ["n"]} for i in range(width)]
        join = {f"f{i}": f"f{i}" for i in range(width)}
        nodes.append({"name": "join", "call": f"{STEPS}:gather", "inputs": join})
    return Workflow.load(
        {
            "name": shape,
            "inputs": {"n": "int"},
            "nodes": nodes,
            "config": {"durability": durability},
        }
    )


async def batch(url: str, shape: str, durability: str, runs: int) -> dict[str, float]:
    """One batch of `runs` runs started at once, in this process."""
    from flowstore.runtime.engine import Engine

    flow = workflow(shape, durability)
    expected = SHAPES["chain"] - 1 if shape == "chain" else SHAPES["fan"] - 1
    async with Engine(url, workers=0, workflows=[flow]) as engine:
        await engine.run(flow, {"n": 0})  # the first run's set-up is not what is measured
        took: list[float] = []

        async def one() -> None:
            started = time.perf_counter()
            run = await engine.run(flow, {"n": 0})
            took.append(time.perf_counter() - started)
            assert run.output == expected, (run.status, run.error)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(runs)))
        wall = time.perf_counter() - started
    ranked = sorted(took)
    return {
        "steps_per_s": runs * SHAPES[shape] / wall,
        "p50_ms": statistics.median(ranked) * 1000,
        "p99_ms": ranked[min(len(ranked) - 1, int(len(ranked) * 0.99))] * 1000,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def fresh_database(url: str | None, scratch: Path, name: str) -> str:
    if url is None:
        return f"sqlite+aiosqlite:///{scratch / name}.db"
    return url


def in_a_process(url: str, shape: str, durability: str, runs: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, __file__, "--one", json.dumps([url, shape, durability, runs])]
    done = subprocess.run(args, env=env, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout.splitlines()[-1]))


async def reset_database(url: str) -> None:
    """Empty a database of flowstore's tables and bring it to the head revision."""
    from flowstore.store import StoreSettings, migrate
    from flowstore.store.engine import create_engine

    engine = create_engine(StoreSettings(url=url))
    try:
        await migrate.downgrade(engine, "base")
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL database to use (default: SQLite files)")
    parser.add_argument("--runs", default="1,10,100,1000")
    parser.add_argument("--shapes", default="chain,fan")
    parser.add_argument("--durability", default="sync,batched")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        url, shape, durability, runs = json.loads(args.one)
        print(json.dumps(asyncio.run(batch(url, shape, durability, runs))))
        return
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.runs, args.repeat = "1,10", 1
    counts = [int(count) for count in args.runs.split(",")]
    print(f"database: {args.url or 'SQLite (WAL, synchronous FULL), a new file per batch'}")
    print(f"{'shape':<8}{'durability':<11}{'C':>6}{'steps/s':>10}{'p50':>11}{'p99':>11}{'RSS':>9}")
    results: dict[tuple[str, str, int], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for shape in args.shapes.split(","):
            for durability in args.durability.split(","):
                for runs in counts:
                    measured = []
                    for attempt in range(args.repeat):
                        name = f"{shape}-{durability}-{runs}-{attempt}"
                        url = fresh_database(args.url, Path(scratch), name)
                        if args.url is not None:
                            asyncio.run(reset_database(url))
                        measured.append(in_a_process(url, shape, durability, runs))
                    figures = {
                        key: statistics.median(m[key] for m in measured) for key in measured[0]
                    }
                    results[(shape, durability, runs)] = figures
                    print(
                        f"{shape:<8}{durability:<11}{runs:>6}{figures['steps_per_s']:>10,.0f}"
                        f"{figures['p50_ms']:>8.1f} ms{figures['p99_ms']:>8.1f} ms"
                        f"{figures['rss_mb']:>6.0f} MB",
                        flush=True,
                    )
    goals = []
    for durability, goal in (("sync", 10_000), ("batched", 20_000)):
        hundred = results.get(("chain", durability, 100))
        if hundred is not None:
            goals.append(
                f"chain, {durability}, C = 100: {hundred['steps_per_s']:,.0f} steps/s "
                f"(goal {goal:,})"
            )
        thousand = results.get(("chain", durability, 1000))
        if hundred is not None and thousand is not None:
            goals.append(
                f"chain, {durability}, C = 1,000 / C = 100 per step: "
                f"{thousand['steps_per_s'] / hundred['steps_per_s']:.2f} (goal >= 1)"
            )
    if goals:
        print("\n" + "\n".join(goals))


if __name__ == "__main__":
    main()
