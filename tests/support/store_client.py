"""A second process that works against the same store, for the cross-process tests.

    python tests/support/store_client.py claim URL WORKER
        claims runs until none is left and prints one JSON line per claim;
    python tests/support/store_client.py append URL RUN_ID FENCING BATCHES
        records BATCHES event batches on one run and prints each batch's sequence range.

Each process prints `ready` once its store is open, then waits for a line on standard input
before it starts, so the test can release both at the same moment and they really race.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from flowstore.store import EventChange, RunId, StoreSettings, WorkerId, open_store


async def _ready_then_wait_for_go() -> None:
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)


async def claim(url: str, worker: str) -> None:
    store = await open_store(StoreSettings(url=url))
    try:
        # Warm up (connect, compile the claim) so both processes start racing at full speed.
        await store.claim_run(WorkerId(worker), lease_seconds=1, workflows=["no-such-workflow"])
        await _ready_then_wait_for_go()
        misses = 0
        while misses < 3:  # SKIP LOCKED may see nothing while the other process holds rows
            claimed = await store.claim_run(WorkerId(worker), lease_seconds=3600)
            if claimed is None:
                misses += 1
                await asyncio.sleep(0.05)
                continue
            misses = 0
            print(json.dumps({"run": claimed.run.id, "fencing": claimed.fencing}), flush=True)
            # A worker does something between claims; without a pause SQLite's busy handler
            # (which sleeps and retries, with no fairness) can let one process take them all.
            await asyncio.sleep(0.002)
    finally:
        await store.close()


async def append(url: str, run_id: str, fencing: int, batches: int) -> None:
    store = await open_store(StoreSettings(url=url))
    rng = random.Random(os.getpid())
    try:
        await _ready_then_wait_for_go()

        async def one(index: int) -> None:
            size = rng.randint(1, 6)
            batch = f"{os.getpid()}:{index}"
            changes = [EventChange("tick", {"batch": batch, "item": i}) for i in range(size)]
            result = await store.record_transitions(RunId(run_id), fencing, changes)
            print(json.dumps([result.first_seq, result.last_seq, size]), flush=True)

        # Several concurrent writers inside this process as well as across processes.
        for start in range(0, batches, 4):
            await asyncio.gather(*(one(i) for i in range(start, min(start + 4, batches))))
    finally:
        await store.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "claim":
        asyncio.run(claim(args[0], args[1]))
    elif mode == "append":
        asyncio.run(append(args[0], args[1], int(args[2]), int(args[3])))
    else:
        sys.exit(__doc__)
