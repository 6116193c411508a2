"""The store's write path on SQLite, next to raw sqlite3 running the same SQL on the same file.

    python benchmarks/store_write.py [--transactions N] [--batched N] [--repeat N] [--dir DIR]

For synchronous FULL and NORMAL it commits node-completion transitions through
`Store.record_transitions`, one per transaction and in batches of 100. Each transition writes
what the engine writes for a finished node: one row of the transition log and one upsert of the
node-execution row, after the run row's fencing check and sequence reservation. Beside it, the
sqlite3 module runs the very same three statements on a database of the same schema, with no
Python layer in between: the floor for this machine and file system. Each transaction is
timed on its own and the median is reported (this machine is shared and noisy); each figure is
the median over --repeat fresh databases, flowstore and sqlite3 taking turns.

Goals on the reference machine: <= 0.5 ms for a single-transition commit, <= 15 us per
transition in batches of 100. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowstore.store import (
    Change,
    EventChange,
    NewRun,
    NodeChange,
    NodeStatus,
    RunId,
    StoreSettings,
    WorkerId,
    open_store,
)

BATCH = 100

# What `record_transitions` runs for a batch of node completions, written out for sqlite3.
RESERVE = (
    "UPDATE flowstore_runs SET last_seq = last_seq + ?, updated_at = ? "
    "WHERE id = ? AND fencing = ? RETURNING last_seq"
)
UPSERT_NODE = (
    "INSERT INTO flowstore_node_executions (run_id, node, exec_key, status, attempt, input, "
    "output, error, created_at, started_at, finished_at, updated_seq) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, node, exec_key) DO UPDATE SET status = excluded.status, "
    "attempt = CASE WHEN excluded.attempt > attempt THEN excluded.attempt ELSE attempt END, "
    "input = coalesce(excluded.input, input), output = coalesce(excluded.output, output), "
    "error = CASE WHEN excluded.status = 'succeeded' THEN NULL "
    "ELSE coalesce(excluded.error, error) END, "
    "started_at = coalesce(excluded.started_at, started_at), "
    "finished_at = excluded.finished_at, updated_seq = excluded.updated_seq"
)
APPEND_LOG = (
    "INSERT INTO flowstore_transitions (run_id, seq, kind, name, node, exec_key, status, "
    "attempt, payload, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def settings_for(path: Path, synchronous: str) -> StoreSettings:
    return StoreSettings(
        url=f"sqlite+aiosqlite:///{path}",
        sqlite_synchronous=synchronous,  # type: ignore[arg-type]
    )


def change_batches(kind: str, transactions: int, batch: int) -> list[list[Change]]:
    """Node completions (a log row and a node row each) or events (a log row each)."""
    if kind == "events":
        return [
            [EventChange("progress", {"value": i}, node=f"n{tx}") for i in range(batch)]
            for tx in range(transactions)
        ]
    return [
        [
            NodeChange(f"n{tx}-{i}", NodeStatus.SUCCEEDED, attempt=1, output={"value": i})
            for i in range(batch)
        ]
        for tx in range(transactions)
    ]


async def flowstore_per_transition(
    path: Path, synchronous: str, kind: str, batch: int, count: int
) -> float:
    """Median seconds per transition through the store, `batch` transitions per commit."""
    async with await open_store(settings_for(path, synchronous)) as store:
        run = await store.create_run(NewRun("bench", "1", "h", {}, owner=WorkerId("bench")))
        for warmup in range(20):
            await store.record_transitions(
                run.id, 1, [NodeChange(f"warm{warmup}", NodeStatus.SUCCEEDED, output=warmup)]
            )
        timings = []
        for changes in change_batches(kind, max(1, count // batch), batch):
            started = time.perf_counter()
            await store.record_transitions(run.id, 1, changes)
            timings.append(time.perf_counter() - started)
        return statistics.median(timings) / batch


async def _schema_with_a_run(path: Path, synchronous: str) -> RunId:
    async with await open_store(settings_for(path, synchronous)) as store:
        run = await store.create_run(NewRun("bench", "1", "h", {}, owner=WorkerId("bench")))
        return run.id


def raw_per_transition(path: Path, synchronous: str, kind: str, batch: int, count: int) -> float:
    """Median seconds per transition for the same statements through sqlite3 directly."""
    run_id = asyncio.run(_schema_with_a_run(path, synchronous))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    timings = []
    for tx in range(max(1, count // batch)):
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        (last_seq,) = conn.execute(RESERVE, (batch, now, run_id, 1)).fetchone()
        first = last_seq - batch + 1
        nodes, log = [], []
        for i in range(batch):
            node, value = f"n{tx}-{i}", f'{{"value":{i}}}'
            if kind == "events":
                log.append(
                    (run_id, first + i, "event", "progress", f"n{tx}", "", None, None, value, now)
                )
                continue
            nodes.append(
                (run_id, node, "", "succeeded", 1, None, value, None, now, None, now, first + i)
            )
            log.append((run_id, first + i, "node", None, node, "", "succeeded", 1, None, now))
        if nodes:
            conn.executemany(UPSERT_NODE, nodes)
        conn.executemany(APPEND_LOG, log)
        conn.execute("COMMIT")
        timings.append(time.perf_counter() - started)
    conn.close()
    return statistics.median(timings) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000, help="single commits to time")
    parser.add_argument("--batched", type=int, default=20000, help="transitions to time in batches")
    parser.add_argument("--repeat", type=int, default=3, help="fresh databases per figure")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database files")
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.transactions, args.batched, args.repeat = 100, 1000, 1

    print(f"flowstore store write path, SQLite {sqlite3.sqlite_version}, WAL, median per commit")
    print(f"{'synchronous':<12}{'shape':<24}{'flowstore':>14}{'raw sqlite3':>14}{'ratio':>8}  goal")
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        paths = (Path(scratch) / f"bench-{n}.db" for n in range(1_000_000))
        for synchronous in ("FULL", "NORMAL"):
            for kind, batch, count, goal in (
                ("nodes", 1, args.transactions, "<= 500 us per commit"),
                ("nodes", BATCH, args.batched, "<= 15 us per transition"),
                ("events", BATCH, args.batched, "(log row only)"),
            ):
                # Alternate the two, so both meet the same load on a shared machine.
                ours_runs, raw_runs = [], []
                for _ in range(args.repeat):
                    ours_runs.append(
                        asyncio.run(
                            flowstore_per_transition(next(paths), synchronous, kind, batch, count)
                        )
                    )
                    raw_runs.append(
                        raw_per_transition(next(paths), synchronous, kind, batch, count)
                    )
                ours, raw = statistics.median(ours_runs), statistics.median(raw_runs)
                shape = f"{kind}, {batch} per commit"
                print(
                    f"{synchronous:<12}{shape:<24}{ours * 1e6:>11.1f} us{raw * 1e6:>11.1f} us"
                    f"{ours / raw:>7.1f}x  {goal}"
                )


if __name__ == "__main__":
    main()
