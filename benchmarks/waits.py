"""What a waiting run costs: 10,000 runs waiting for a signal in one SQLite database.

    python benchmarks/waits.py [--runs 10000]

A `flowstore worker` process (4 runs at once) takes the runs; this process submits them with
a `Client`, waits until every one is stored `waiting`, reads the worker's RSS (against its
RSS once idle, before any run), counts the rows a waiting run takes in the database, then
signals every run and waits for all to end; then signals a few more runs one every 50 ms.
Printed: the worker's RSS idle and with every run waiting, rows per waiting run, how fast the
worker ends the signalled runs, the time from each signal to its run's end (p50, p99, from
the stored times) when all are signalled at once (mostly time queued behind the others) and
one by one, and a check that every run ended once with its signal's payload, each signal
taken once. Goal: RSS with every run waiting within 20 MB of idle. Never asserted.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from benchmarks.workers import start_worker  # noqa: E402
from flowstore import Client, RunStatus, Workflow  # noqa: E402
from flowstore.store.schema import metadata  # noqa: E402

WORKFLOW = "benchmarks.waits:flow"
flow = Workflow.load(
    {
        "name": "await_go",
        "inputs": {"n": "int"},
        "nodes": [{"name": "await_go", "call": "benchmarks.steps:await_go", "inputs": ["n"]}],
    }
)


def rss_mb(pid: int) -> float:
    """A process's resident memory, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def count_rows(client: Client) -> int:
    engine = client.store.engine
    total = 0
    async with engine.connect() as conn:
        for table in metadata.sorted_tables:
            total += (await conn.execute(select(func.count()).select_from(table))).scalar_one()
    return int(total)


async def until(client: Client, status: RunStatus, count: int, limit: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < limit:
        if len(await client.list_runs(status=status, limit=count + 1)) >= count:
            break
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


async def signal_to_end(client: Client, ended: list[Any]) -> list[float]:
    """Milliseconds from each run's signal to its end (each signal taken, once)."""
    latencies = []
    for run in ended:
        [signal] = await client.store.list_signals(run.id)
        assert signal.consumed_at is not None
        assert run.finished_at is not None
        latencies.append((run.finished_at - signal.created_at).total_seconds() * 1000)
    return sorted(latencies)


def percentiles(latencies: list[float]) -> str:
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return f"p50 {statistics.median(latencies):,.0f} ms, p99 {p99:,.0f} ms"


async def main(runs: int, paced: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="flowstore-waits-"))
    url = f"sqlite+aiosqlite:///{folder / 'waits.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    upgrade = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flowstore", "db", "upgrade", "--url", url, env=env
    )
    await upgrade.wait()
    worker = await start_worker(WORKFLOW, url, poll=0.2, env=env)
    try:
        await asyncio.sleep(1.0)
        idle = rss_mb(worker.pid)
        async with Client(url, poll_seconds=0.5) as client:
            base_rows = await count_rows(client)
            t0 = time.perf_counter()
            ids = [await client.submit("await_go", {"n": n}) for n in range(runs)]
            submitted = time.perf_counter() - t0
            took = await until(client, RunStatus.WAITING, runs, limit=3600)
            waiting_rss = rss_mb(worker.pid)
            rows = (await count_rows(client) - base_rows) / runs
            t1 = time.perf_counter()
            for n, run_id in enumerate(ids):
                await client.signal(run_id, "go", 1000, idempotency_key=f"go-{n}")
            signalled = time.perf_counter() - t1
            await until(client, RunStatus.SUCCEEDED, runs, limit=3600)
            ended = [await client.get_run(run_id) for run_id in ids]
            latencies = await signal_to_end(client, ended)
            last_end = max(run.finished_at for run in ended if run.finished_at is not None)
            [first_signal] = await client.store.list_signals(ids[0])
            drained = (last_end - first_signal.created_at).total_seconds()
            correct = all(
                run.status is RunStatus.SUCCEEDED and run.output == n + 1000
                for n, run in enumerate(ended)
            )
            # A few more, signalled one every 50 ms: the latency with no backlog.
            more = [await client.submit("await_go", {"n": n}) for n in range(paced)]
            await until(client, RunStatus.WAITING, paced, limit=600)
            for run_id in more:
                await client.signal(run_id, "go", 1000)
                await asyncio.sleep(0.05)
            await until(client, RunStatus.SUCCEEDED, runs + paced, limit=600)
            paced_latencies = await signal_to_end(
                client, [await client.get_run(run_id) for run_id in more]
            )
    finally:
        worker.terminate()
        await worker.wait()
    print(f"runs waiting for a signal:        {runs:,}")
    print(f"submitted in:                     {submitted:.1f} s; all waiting after {took:.1f} s")
    print(f"worker RSS idle:                  {idle:.1f} MB")
    grew = waiting_rss - idle
    print(f"worker RSS, every run waiting:    {waiting_rss:.1f} MB ({grew:+.1f} MB; goal: 20 MB)")
    print(f"rows per waiting run:             {rows:.1f} (every table)")
    print(f"signalled in:                     {signalled:.1f} s (one client, one at a time)")
    print(f"first signal to last run's end:   {drained:.1f} s ({runs / drained:,.0f} runs/s)")
    print(f"signal to run's end, all at once: {percentiles(latencies)} (queued behind the rest)")
    print(f"signal to run's end, 1 per 50 ms: {percentiles(paced_latencies)} ({paced} runs)")
    print(f"every run ended once, with its signal's payload, each signal taken once: {correct}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--paced", type=int, default=200, help="runs signalled one by one")
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.runs, args.paced = 50, 5
    asyncio.run(main(args.runs, args.paced))
