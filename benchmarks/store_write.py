"""The store's write path on SQLite, next to raw sqlite3 on the same file system.

    python benchmarks/store_write.py [--transactions N] [--dir DIR]

For synchronous FULL and NORMAL it commits node transitions through `Store.record_transitions`
one per transaction and in batches of 100, and the same shapes of rows through the sqlite3
module directly (WAL, same synchronous level), then prints time per transition and the ratio.
Goals on the reference machine: <= 15 us per transition in batches of 100, <= 0.5 ms for a
single-transition commit. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowstore.store import (
    NewRun,
    NodeChange,
    NodeStatus,
    StoreSettings,
    WorkerId,
    open_store,
)

BATCH = 100


async def flowstore_per_transition(path: Path, synchronous: str, batch: int, count: int) -> float:
    """Seconds per transition through the store, committing `batch` transitions at a time."""
    settings = StoreSettings(
        url=f"sqlite+aiosqlite:///{path}",
        sqlite_synchronous=synchronous,  # type: ignore[arg-type]
    )
    store = await open_store(settings)
    try:
        run = await store.create_run(NewRun("bench", "1", "h", {}, owner=WorkerId("bench")))
        transactions = max(1, count // batch)
        for warmup in range(20):
            await store.record_transitions(
                run.id, 1, [NodeChange(f"warm{warmup}", NodeStatus.SUCCEEDED, output=warmup)]
            )
        started = time.perf_counter()
        for tx in range(transactions):
            changes = [
                NodeChange(f"n{tx}-{i}", NodeStatus.SUCCEEDED, attempt=1, output={"value": i})
                for i in range(batch)
            ]
            await store.record_transitions(run.id, 1, changes)
        elapsed = time.perf_counter() - started
        return elapsed / (transactions * batch)
    finally:
        await store.close()


def raw_per_transition(path: Path, synchronous: str, batch: int, count: int) -> float:
    """Seconds per row through the sqlite3 module: the floor for this file system."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE log (run_id TEXT, seq INTEGER, kind TEXT, node TEXT, status TEXT,"
        " payload TEXT, created_at TEXT, PRIMARY KEY (run_id, seq))"
    )
    conn.execute("CREATE TABLE head (run_id TEXT PRIMARY KEY, last_seq INTEGER)")
    conn.execute("INSERT INTO head VALUES ('r', 0)")
    transactions = max(1, count // batch)
    seq = 0
    started = time.perf_counter()
    for tx in range(transactions):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE head SET last_seq = last_seq + ? WHERE run_id = 'r'", (batch,))
        rows = []
        for i in range(batch):
            seq += 1
            rows.append(
                ("r", seq, "node", f"n{tx}-{i}", "succeeded", json.dumps({"value": i}), "t")
            )
        conn.executemany("INSERT INTO log VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed / (transactions * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000, help="single commits to time")
    parser.add_argument("--batched", type=int, default=20000, help="transitions to time in batches")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the database files")
    args = parser.parse_args()

    print(f"flowstore store write path, SQLite {sqlite3.sqlite_version}, WAL")
    print(f"{'synchronous':<12}{'shape':<22}{'flowstore':>14}{'raw sqlite3':>14}{'ratio':>8}  goal")
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        counter = 0

        def fresh() -> Path:
            nonlocal counter
            counter += 1
            return Path(scratch) / f"bench-{counter}.db"

        for synchronous in ("FULL", "NORMAL"):
            for batch, count, goal in (
                (1, args.transactions, "<= 500 us per commit"),
                (BATCH, args.batched, "<= 15 us per transition"),
            ):
                ours = statistics.median(
                    asyncio.run(flowstore_per_transition(fresh(), synchronous, batch, count))
                    for _ in range(args.repeat)
                )
                raw = statistics.median(
                    raw_per_transition(fresh(), synchronous, batch, count)
                    for _ in range(args.repeat)
                )
                shape = "1 per transaction" if batch == 1 else f"{batch} per transaction"
                print(
                    f"{synchronous:<12}{shape:<22}{ours * 1e6:>11.1f} us{raw * 1e6:>11.1f} us"
                    f"{ours / raw:>7.1f}x  {goal}"
                )


if __name__ == "__main__":
    main()
