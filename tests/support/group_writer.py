"""A process that commits many runs' changes at once, for the group-commit crash test.

    python -m tests.support.group_writer URL RUNS

Creates RUNS owned runs, then each run, in its own task, commits one event after another
(payload: the run's id and the event's number). After each commit returns, prints
`RUN_ID NUMBER` (flushed): what this process was told is durable. Runs until killed.
"""

from __future__ import annotations

import asyncio
import sys

from flowstore.store import EventChange, NewRun, WorkerId, open_store


async def main(url: str, count: int) -> None:
    store = await open_store(url)
    owner = WorkerId("group-writer")
    runs = [
        (await store.create_run(NewRun("w", "1", "h", {}, owner=owner))).id for _ in range(count)
    ]
    print("ready", flush=True)

    async def write(run_id: str) -> None:
        number = 0
        while True:
            change = EventChange("e", {"run": run_id, "i": number})
            await store.record_transitions(run_id, 1, [change])  # type: ignore[arg-type]
            sys.stdout.write(f"{run_id} {number}\n")
            sys.stdout.flush()
            number += 1

    await asyncio.gather(*(write(run_id) for run_id in runs))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
