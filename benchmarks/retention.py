"""Many runs over time: query speed with 100,000 ended runs, and deleting 90,000 of them while
a worker runs workflows.

    python benchmarks/retention.py [--runs 100000] [--url URL]

On one database (a new SQLite file by default; `--url` for PostgreSQL):

1. With 100 ended runs, then with `--runs` of them, times the queries that must not slow
   down as runs pile up: an empty claim, the next due waiting run, listing runs (all, the
   waiting ones, one workflow's), finding a short id. Prints each at both sizes, and each
   query's plan (on SQLite, with whether it reads the whole runs table).
2. Starts a `flowstore worker` process and submits a run of a three-node workflow every
   50 ms: first for a while with nothing else, then while this process deletes the oldest
   90% of the ended runs (`delete_old_runs`, the code of `flowstore gc`). Prints how long
   the delete took, its batches, the longest, the space given back, and the worker's runs
   before and during it (p50 and slowest, from the stored start and end times), with any
   run that failed and any "database is locked" the worker logged. Then the worker alone for
   as long as the delete took: how many runs a noisy machine makes slow with no delete.

Goals: every query as fast at `--runs` as at 100 (within noise), no plan that reads every
run, no failure, no run during the delete slower than twice the slowest before. Never
asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.workers import start_worker  # noqa: E402
from flowstore import Client, Engine, RunStatus, Workflow  # noqa: E402
from flowstore.runtime.retention import delete_old_runs  # noqa: E402
from flowstore.store import RunQuery, WorkerId  # noqa: E402
from flowstore.store.plans import query_plans, reads_every_run  # noqa: E402
from flowstore.store.sqlite_threads import SQLiteThreads  # noqa: E402

seeded = Workflow("seeded")


@seeded.node
async def one(n: int) -> int:
    return n


steady = Workflow.load(
    {
        "name": "steady",
        "inputs": {"n": "int"},
        "nodes": [
            {"name": "start", "call": "benchmarks.steps:start", "inputs": ["n"]},
            {"name": "nap", "call": "benchmarks.steps:nap", "inputs": {"n": "start"}},
            {"name": "step", "call": "benchmarks.steps:step", "inputs": {"previous": "nap"}},
        ],
    }
)


async def seed(engine: Engine, count: int, *, at_once: int = 50) -> None:
    """`count` ended runs of a one-node workflow, `at_once` at a time."""
    for first in range(0, count, at_once):
        size = min(at_once, count - first)
        await asyncio.gather(*(engine.run(seeded, {"n": n}) for n in range(size)))


async def timed(work: Callable[[], Awaitable[Any]], repeat: int) -> float:
    """The median time of `work`, in ms."""
    took = []
    for _ in range(repeat):
        started = time.perf_counter()
        await work()
        took.append((time.perf_counter() - started) * 1000)
    return statistics.median(took)


async def query_times(engine: Engine, repeat: int) -> dict[str, float]:
    store = engine.store
    nothing = ["0" * 64]  # a definition with no runs: every claim finds nothing
    short = (await store.list_runs(RunQuery(limit=1)))[0].id[:6]
    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "empty claim": lambda: store.claim_run(
            WorkerId("bench"), lease_seconds=30, graph_hashes=nothing
        ),
        "next due waiting run": lambda: store.next_wake_at(nothing),
        "list runs (100)": lambda: store.list_runs(RunQuery(limit=100)),
        "list waiting runs": lambda: store.list_runs(
            RunQuery(statuses=frozenset({RunStatus.WAITING}), limit=100)
        ),
        "list a workflow's runs": lambda: store.list_runs(RunQuery(workflow="seeded", limit=100)),
        "find a short id": lambda: store.find_run_ids(short),
    }
    return {name: await timed(query, repeat) for name, query in queries.items()}


def explain_slow_runs(runs: list[Any], steps: list[Any], slow_ms: float) -> None:
    """For the runs slower than `slow_ms`: which of the delete's steps (a batch, giving
    space back) ran while they did, from the stored times and the steps' own."""
    overlapping: dict[str, int] = {"delete": 0, "reclaim": 0, "none": 0}
    shown = []
    for run in runs:
        if run.started_at is None or run.finished_at is None:
            continue
        took = (run.finished_at - run.started_at).total_seconds() * 1000
        if took <= slow_ms:
            continue
        during = [
            (kind, ms)
            for kind, began, ms in steps
            if began <= run.finished_at and began + timedelta(milliseconds=ms) >= run.started_at
        ]
        kinds = {kind for kind, _ in during} or {"none"}
        for kind in kinds:
            overlapping[kind] += 1
        shown.append((took, during))
    if not shown:
        return
    print(
        f"slow runs overlapping a delete batch: {overlapping['delete']}, a step giving space "
        f"back: {overlapping['reclaim']}, neither: {overlapping['none']}"
    )
    for took, during in sorted(shown, reverse=True)[:5]:
        steps_seen = ", ".join(f"{kind} {ms:.0f} ms" for kind, ms in during) or "no step"
        print(f"  a run of {took:.0f} ms, with {steps_seen}")


class LockTimes:
    """How long each write transaction of this process held SQLite's write lock, from the
    moment it had it (its work begins after `BEGIN IMMEDIATE`) to its commit's end: the
    longest a worker in another process can wait on the delete. Wraps the writer threads'
    transaction runner of this process while the delete runs."""

    def __init__(self) -> None:
        self.held_ms: list[float] = []
        self._real = SQLiteThreads._run

    def __enter__(self) -> LockTimes:
        real, held = self._real, self.held_ms

        def timed(threads: Any, conn: Any, request: Any) -> Any:
            if not request.transaction:
                return real(threads, conn, request)
            began: list[float] = []

            def work(connection: Any) -> Any:
                began.append(time.perf_counter())
                return request.work(connection)

            try:
                return real(threads, conn, dataclasses.replace(request, work=work))
            finally:
                if began:
                    held.append((time.perf_counter() - began[0]) * 1000)

        SQLiteThreads._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        SQLiteThreads._run = self._real  # type: ignore[method-assign]


def p50_and_max(durations: list[float]) -> str:
    if not durations:
        return "no runs"
    ranked = sorted(durations)
    p99 = ranked[min(len(ranked) - 1, int(len(ranked) * 0.99))]
    return f"p50 {statistics.median(ranked):.0f} ms, p99 {p99:.0f} ms, slowest {ranked[-1]:.0f} ms"


async def steady_runs(client: Client, seconds: float, during: Awaitable[Any] | None) -> Any:
    """Submit a run every 50 ms for `seconds` (or until `during` is done, if longer); the
    runs' stored durations, in ms, and how many failed."""
    task = asyncio.ensure_future(during) if during is not None else None
    ids: list[str] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or (task is not None and not task.done()):
        ids.append(await client.submit("steady", {"n": len(ids)}))
        await asyncio.sleep(0.05)
    runs = [await asyncio.wait_for(client.wait(run_id), 120) for run_id in ids]
    durations = [
        (run.finished_at - run.started_at).total_seconds() * 1000
        for run in runs
        if run.finished_at is not None and run.started_at is not None
    ]
    failed = sum(run.status is not RunStatus.SUCCEEDED for run in runs)
    return durations, failed, (await task if task is not None else None), runs


async def main(url: str, runs: int, repeat: int, steady_seconds: float, at_once: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    async with Engine(url, workers=0, telemetry=False) as engine:
        await seed(engine, 100, at_once=at_once)
        small = await query_times(engine, repeat)
        started = time.perf_counter()
        await seed(engine, int(runs * 0.9) - 100, at_once=at_once)
        cutoff = datetime.now(UTC)  # the oldest 90% ended before this
        await seed(engine, runs - int(runs * 0.9), at_once=at_once)
        seeding = time.perf_counter() - started
        large = await query_times(engine, repeat)
        async with engine.store.engine.connect() as conn:
            plans = await conn.run_sync(query_plans)
        before_space = await engine.store.space_use()

    print(f"database: {url}")
    print(f"ended runs: {runs:,} (seeded in {seeding:.0f} s)")
    print(f"{'query (median)':<26}{'100 runs':>12}{f'{runs:,} runs':>16}")
    for name in small:
        print(f"{name:<26}{small[name]:>9.3f} ms{large[name]:>13.3f} ms")
    sqlite = url.startswith("sqlite")
    for name, plan in plans.items():
        # PostgreSQL chooses by its statistics: a whole table when most of it matches (the
        # tests check, with sequential scans off, that an index serves each query).
        # The due ones, the free ones, the ids with a prefix.
        sorts = name in ("claim waiting", "claim running", "find a short id")
        flag = "READS EVERY RUN" if reads_every_run(plan, sorts=sorts) else "ok"
        print(f"plan of {name}: {flag if sqlite else 'as PostgreSQL chose it'}")
        for line in plan.splitlines():
            print(f"    {line}")

    locks = LockTimes()
    worker = await start_worker("benchmarks.retention:steady", url, poll=0.1, env=env)
    try:
        async with Client(url, poll_seconds=0.05) as client:
            before, failed_before, _, _ = await steady_runs(client, steady_seconds, None)
            store = client.store

            async def collect() -> Any:
                started = time.perf_counter()
                with locks:
                    sweep = await delete_old_runs(store, ended_before=cutoff)
                return sweep, time.perf_counter() - started

            during, failed_during, (sweep, took), during_runs = await steady_runs(
                client, steady_seconds, collect()
            )
            after_space = await store.space_use()
            # The machine's own noise: the worker alone again, for as long as the delete took.
            alone, failed_alone, _, _ = await steady_runs(client, took, None)
            left = len(await store.list_runs(RunQuery(limit=runs)))
    finally:
        worker.terminate()
        _, stderr = await worker.communicate()
    locked = stderr.decode().count("database is locked")
    print(f"deleted: {sweep.deleted:,} runs in {took:.1f} s ({sweep.deleted / took:,.0f} runs/s)")
    print(
        f"batches: {sweep.batches}, the longest {sweep.longest_batch_ms:.0f} ms; the longest "
        f"step giving space back {sweep.longest_reclaim_ms:.0f} ms"
    )
    print(f"runs left: {left:,} (and the {len(before) + len(during)} the worker ran)")
    if locks.held_ms:
        print(f"the delete's transactions held the write lock: {p50_and_max(locks.held_ms)}")
    if before_space.file_bytes:
        mb = 2**20
        print(
            f"database file: {before_space.file_bytes / mb:.1f} MB before, "
            f"{after_space.file_bytes / mb:.1f} MB after ({sweep.pages_freed:,} pages given back)"
        )
    print(f"worker's runs before the delete: {p50_and_max(before)} ({len(before)} runs)")
    print(f"worker's runs during the delete: {p50_and_max(during)} ({len(during)} runs)")
    print(f"worker's runs alone, as long again: {p50_and_max(alone)} ({len(alone)} runs)")
    if before and during and alone:
        usual = statistics.median(before)
        slow = sum(duration > 2 * usual for duration in during)
        slow_before = sum(duration > 2 * usual for duration in before)
        slow_alone = sum(duration > 2 * usual for duration in alone)
        print(
            f"runs over twice the usual {usual:.0f} ms: {slow} of {len(during)} during the "
            f"delete, {slow_alone} of {len(alone)} in as long again with no delete, "
            f"{slow_before} of {len(before)} before it"
        )
        print(f"slowest during / slowest before: {max(during) / max(before):.2f}")
        explain_slow_runs(during_runs, sweep.steps, 2 * usual)
    failed = failed_before + failed_during + failed_alone
    print(f"failed runs: {failed}; 'database is locked' logged: {locked}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--url", help="a database to use (default: a new SQLite file)")
    parser.add_argument("--repeat", type=int, default=200, help="timings per query")
    parser.add_argument("--steady", type=float, default=10.0, help="seconds of runs before")
    parser.add_argument("--at-once", type=int, default=50, help="runs seeded at once")
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.runs, args.repeat, args.steady = 1_000, 5, 1.0
    if args.url is None:
        folder = Path(tempfile.mkdtemp(prefix="flowstore-retention-"))
        args.url = f"sqlite+aiosqlite:///{folder / 'retention.db'}"
    asyncio.run(main(args.url, args.runs, args.repeat, args.steady, args.at_once))
