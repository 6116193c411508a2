"""Queues across processes: three `flowstore worker` processes share one database, and the
database's own timeline shows every limit held: at most 2 running in a queue of
concurrency 2, one run per customer at a time, and at most 10 starts in any second, on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from flowstore import Client, RunStatus
from tests.support.cli import run_flowstore, start_worker
from tests.support.timeline import most_at_once, most_started_within, running_spans


@pytest.mark.slow
async def test_three_worker_processes_keep_every_queue_limit(migrated_url: str) -> None:
    env = {**os.environ, "FLOWSTORE_DATABASE_URL": migrated_url}
    run_flowstore("queues", "set", "two", "--concurrency", "2", env=env)
    run_flowstore("queues", "set", "customers", "--per-key", "1", env=env)
    run_flowstore("queues", "set", "paced", "--rate", "10/s", env=env)
    workers = [
        await start_worker(
            "tests.support.queue_flow:flow",
            migrated_url,
            "--concurrency",
            "4",
            "--poll",
            "0.1",
            env=env,
        )
        for _ in range(3)
    ]
    try:
        async with Client(migrated_url, poll_seconds=0.05) as client:
            for _ in range(200):  # until the workers stored the definition
                if await client.store.list_graphs("queued"):
                    break
                await asyncio.sleep(0.05)
            submitted = {"two": [], "customers": [], "paced": []}
            for _ in range(50):
                submitted["two"].append(
                    await client.submit("queued", {"seconds": 0.05, "customer": ""}, queue="two")
                )
            for i in range(30):
                customer = f"customer-{i % 3}"
                submitted["customers"].append(
                    await client.submit(
                        "queued",
                        {"seconds": 0.05, "customer": customer},
                        queue="customers",
                        queue_key=customer,
                    )
                )
            for _ in range(40):
                submitted["paced"].append(
                    await client.submit("queued", {"seconds": 0.0, "customer": ""}, queue="paced")
                )
            shown = run_flowstore("queues", env=env).stdout
            assert "two" in shown and "concurrency 2" in shown and "10 starts per 1 s" in shown
            everything = [run_id for ids in submitted.values() for run_id in ids]
            ended = await asyncio.wait_for(
                asyncio.gather(*(client.wait(run_id) for run_id in everything)), 120
            )
            assert {run.status for run in ended} == {RunStatus.SUCCEEDED}
            records = {
                queue: [await client.store.get_run(run_id) for run_id in ids]
                for queue, ids in submitted.items()
            }
            spans = {
                queue: await running_spans(client.store, queued)
                for queue, queued in records.items()
            }
            owners = {
                row.payload["owner"]
                for run_id in everything
                for row in await client.store.read_transitions(run_id)
                if row.status == "running" and row.payload and "owner" in row.payload
            }
            removed = run_flowstore("queues", "remove", "paced", env=env).stdout
            assert removed.strip() == "removed queue paced"
            gone = run_flowstore("queues", "remove", "paced", env=env, check=False)
            assert "no queue is named 'paced' (stored: customers, two)" in gone.stderr
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            await worker.wait()
    assert len({owner.split(":")[1] for owner in owners}) == 3  # all three processes took runs
    two = most_at_once(spans["two"])
    per_customer = {
        key: most_at_once([span for span in spans["customers"] if span.key == key])
        for key in ("customer-0", "customer-1", "customer-2")
    }
    starts = [record.started_at for record in records["paced"]]
    in_a_second = most_started_within(starts, 1.0)
    took = (max(starts) - min(starts)).total_seconds()
    print(
        f"queue 'two': at most {two} running at once; 'customers': at most "
        f"{max(per_customer.values())} per customer ({most_at_once(spans['customers'])} in "
        f"all); 'paced': at most {in_a_second} starts in any second, 40 starts over {took:.2f} s"
    )
    assert two == 2
    assert set(per_customer.values()) == {1}
    assert most_at_once(spans["customers"]) >= 2
    assert in_a_second == 10 and took >= 3.0
