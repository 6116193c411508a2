"""Worker processes sharing one database: how fast 1, 2 and 4 of them drain a backlog.

    python benchmarks/scaleout.py [--url URL] [--runs 5000] [--processes 1,2,4]
                                  [--concurrency 32]

For each process count P: a fresh database (a new SQLite file by default; with `--url`, a
PostgreSQL database emptied and migrated again) gets `--runs` submitted runs of a chain of
10 no-op nodes (`sync` durability); then P `flowstore worker` processes start, each running
up to `--concurrency` runs at once, and drain it. Prints runs/s and steps/s per P, from the
stored times (the first start to the last end, so starting the processes is not counted),
and the speed-up over one process. Every run must succeed. It also prints the CPU seconds
the worker processes used, in all, and (on Linux, when the PostgreSQL server runs on this
machine) the server's: what the processes have to share when the server is on their cores.

Goal on the reference machine (2 cores; printed, never asserted): on PostgreSQL two processes
drain at least 1.6 times what one drains. On SQLite every process writes through one file
lock, so more processes only add contention (1 and 2 are shown).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.concurrency import SHAPES, reset_database, workflow  # noqa: E402
from benchmarks.workers import start_worker  # noqa: E402
from flowstore import Engine, RunStatus  # noqa: E402
from flowstore.store import RunQuery  # noqa: E402

chain = workflow("chain", "sync")  # what the workers run: benchmarks.scaleout:chain


async def submit_all(url: str, count: int) -> None:
    async with Engine(url, workers=0, workflows=[chain]) as engine:
        for start in range(0, count, 200):
            batch = range(start, min(count, start + 200))
            await asyncio.gather(*(engine.submit(chain, {"n": 0}) for _ in batch))


def server_cpu_seconds() -> float | None:
    """CPU seconds used so far by the processes of a PostgreSQL server on this machine (Linux);
    None when there are none to see."""
    ticks, seen = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)
        except OSError:  # gone meanwhile
            continue
        if fields[0].endswith("(postgres"):
            seen = True
            ticks += sum(int(value) for value in fields[1].split()[11:15])  # utime .. cstime
    return ticks / os.sysconf("SC_CLK_TCK") if seen else None


def _seconds(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def _children_cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


async def drain(url: str, count: int, processes: int, concurrency: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    await submit_all(url, count)
    workers_before, server_before = _children_cpu_seconds(), server_cpu_seconds()
    workers = [
        await start_worker(
            "benchmarks.scaleout:chain", url, poll=0.05, env=env, concurrency=concurrency
        )
        for _ in range(processes)
    ]
    try:
        async with Engine(url, workers=0) as engine:
            ended = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED})
            deadline = time.monotonic() + 1800
            while True:
                left = await engine.store.list_runs(
                    RunQuery(statuses=frozenset(RunStatus) - ended, limit=1)
                )
                if not left:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit("the workers did not drain the backlog in 30 minutes")
                await asyncio.sleep(0.5)
            runs = await engine.store.list_runs(RunQuery(limit=count + 1))
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            await worker.communicate()
    server_after = server_cpu_seconds()
    server = None
    if server_before is not None and server_after is not None and url.startswith("postgresql"):
        server = server_after - server_before
    failed = [run.id for run in runs if run.status is not RunStatus.SUCCEEDED]
    if failed:
        raise SystemExit(f"{len(failed)} runs did not succeed, such as {failed[0]}")
    first = min(run.started_at for run in runs if run.started_at is not None)
    last = max(run.finished_at for run in runs if run.finished_at is not None)
    took = (last - first).total_seconds()
    return {
        "seconds": took,
        "runs_per_s": count / took,
        "steps_per_s": count * SHAPES["chain"] / took,
        "workers_cpu_s": _children_cpu_seconds() - workers_before,
        "server_cpu_s": float("nan") if server is None else server,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL database to use (default: SQLite files)")
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--processes", help="process counts (default: 1,2,4; SQLite 1,2)")
    parser.add_argument("--concurrency", type=int, default=32, help="runs per process")
    args = parser.parse_args()
    counts = args.processes or ("1,2,4" if args.url else "1,2")
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.runs, counts = 50, "1,2"
    print(f"database: {args.url or 'SQLite (WAL, synchronous FULL), a new file each'}")
    print(f"{args.runs:,} runs of a 10-node chain, {args.concurrency} at once per process")
    print(
        f"{'processes':>9}{'seconds':>10}{'runs/s':>10}{'steps/s':>10}{'speed-up':>10}"
        f"{'workers CPU s':>15}{'server CPU s':>14}"
    )
    one = None
    with tempfile.TemporaryDirectory() as scratch:
        for processes in (int(count) for count in counts.split(",")):
            url = args.url or f"sqlite+aiosqlite:///{Path(scratch) / f'drain-{processes}.db'}"
            if args.url:
                asyncio.run(reset_database(url))
            figures = asyncio.run(drain(url, args.runs, processes, args.concurrency))
            one = one or figures["runs_per_s"]
            print(
                f"{processes:>9}{figures['seconds']:>10.1f}{figures['runs_per_s']:>10,.0f}"
                f"{figures['steps_per_s']:>10,.0f}{figures['runs_per_s'] / one:>9.2f}x"
                f"{figures['workers_cpu_s']:>15.1f}{_seconds(figures['server_cpu_s']):>14}",
                flush=True,
            )


if __name__ == "__main__":
    main()
