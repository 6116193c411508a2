"""Queues: concurrency, per-key and rate limits enforced in SQL across engines, priorities,
and the places runs hold and give back, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flowstore import (
    ConfigurationError,
    DefinitionError,
    Engine,
    ExecutionConfig,
    IntegrityConflict,
    InvalidValue,
    NodeContext,
    Queue,
    QueueNotFound,
    RunStatus,
    Workflow,
)
from tests.support.statuses import until_status
from tests.support.timeline import most_at_once, most_started_within, running_spans


def busy(name: str = "busy", *, queue: str | None = None, key: str | None = None) -> Workflow:
    flow = Workflow(name, config=ExecutionConfig(queue=queue, queue_key=key))

    @flow.node
    async def work(seconds: float, customer: str) -> str:
        await asyncio.sleep(seconds)
        return customer

    return flow


@contextlib.asynccontextmanager
async def engines(
    url: str, flow: Workflow, count: int, **options: Any
) -> AsyncIterator[list[Engine]]:
    """`count` engines of 3 worker slots each on one database, as separate workers would be."""
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(
                Engine(url, workflows=[flow], workers=3, poll_seconds=0.05, **options)
            )
            for _ in range(count)
        ]
        yield opened


async def finished(engine: Engine, run_ids: list[str]) -> list[Any]:
    runs = await asyncio.wait_for(asyncio.gather(*(engine.wait(i) for i in run_ids)), 60)
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}
    return [await engine.store.get_run(run.id) for run in runs]


async def test_a_concurrency_limit_holds_across_engines(migrated_url: str) -> None:
    flow = busy(queue="two")
    async with engines(migrated_url, flow, 3, queues=[Queue("two", concurrency=2)]) as three:
        ids = [
            await three[i % 3].submit(flow, {"seconds": 0.05, "customer": ""}) for i in range(24)
        ]
        records = await finished(three[0], ids)
        spans = await running_spans(three[0].store, records)
        states = {state.queue.name: state for state in await three[0].store.queue_states()}
    assert len(spans) == 24
    assert most_at_once(spans) == 2  # never more, and the limit was used
    assert {record.queue for record in records} == {"two"}
    assert (states["two"].queued, states["two"].running) == (0, 0)


async def test_a_per_key_limit_runs_one_per_key_while_keys_overlap(migrated_url: str) -> None:
    flow = busy(queue="customers", key="customer")
    async with engines(migrated_url, flow, 2, queues=[Queue("customers", per_key=1)]) as two:
        ids = [
            await two[i % 2].submit(flow, {"seconds": 0.05, "customer": f"c{i % 3}"})
            for i in range(18)
        ]
        records = await finished(two[0], ids)
        spans = await running_spans(two[0].store, records)
    assert {record.queue_key for record in records} == {"c0", "c1", "c2"}
    for key in ("c0", "c1", "c2"):
        assert most_at_once([span for span in spans if span.key == key]) == 1
    assert most_at_once(spans) >= 2  # different keys ran side by side


async def test_a_rate_limit_spaces_the_starts(migrated_url: str) -> None:
    flow = busy(queue="paced")
    paced = Queue("paced", rate_limit=4, rate_period=0.5)
    async with engines(migrated_url, flow, 2, queues=[paced]) as two:
        ids = [await two[i % 2].submit(flow, {"seconds": 0.0, "customer": ""}) for i in range(16)]
        records = await finished(two[0], ids)
    starts = [record.started_at for record in records]
    assert most_started_within(starts, 0.5) == 4
    took = (max(starts) - min(starts)).total_seconds()
    assert took >= 1.5  # 16 starts, 4 per half second: three windows after the first


async def test_priorities_order_a_queue_and_a_full_queue_holds_back_no_one_else(
    migrated_url: str,
) -> None:
    flow, other = busy(queue="one"), busy("other")
    async with Engine(
        migrated_url,
        workflows=[flow, other],
        workers=0,
        queues=[Queue("one", concurrency=1)],
    ) as engine:
        low = await engine.submit(flow, {"seconds": 0.0, "customer": ""})
        high = await engine.submit(flow, {"seconds": 0.0, "customer": ""}, priority=5)
        loose = await engine.submit(other, {"seconds": 0.0, "customer": ""})
        worker = engine.worker_id
        first = await engine.store.claim_run(worker, lease_seconds=30)
        assert first is not None and first.run.id == high
        # The queue is full: the next claim passes its runs over for the run in no queue.
        second = await engine.store.claim_run(worker, lease_seconds=30)
        assert second is not None and second.run.id == loose
        assert await engine.store.claim_run(worker, lease_seconds=30) is None
        [state] = await engine.store.queue_states()
        assert (state.queued, state.running) == (1, 1)
        assert state.oldest_queued_at is not None
        await engine.store.release_lease(high, worker, first.fencing)  # still running: held
        assert await engine.store.claim_run(worker, lease_seconds=30, run_id=low) is None


async def test_a_waiting_run_gives_its_place_back_and_needs_one_to_go_on(
    migrated_url: str,
) -> None:
    """`a` waits for a signal: its place in a queue of one goes to `b`. Signalled while `b`
    holds the place, `a` goes on only once `b` has ended. No step depends on timing."""
    flow = Workflow("napper", config=ExecutionConfig(queue="one"))
    order: list[str] = []
    b_started, release_b = asyncio.Event(), asyncio.Event()

    @flow.node
    async def nap(name: str, ctx: NodeContext) -> str:
        order.append(f"{name} starts")
        if name == "a":
            await ctx.wait_for_signal("go")
        else:
            b_started.set()
            await release_b.wait()
        order.append(f"{name} wakes")
        return name

    async with Engine(
        migrated_url,
        workflows=[flow],
        workers=2,
        poll_seconds=0.05,
        queues=[Queue("one", concurrency=1)],
    ) as engine:
        sleeper = await engine.submit(flow, {"name": "a"})
        await until_status(engine, sleeper, RunStatus.WAITING)
        other = await engine.submit(flow, {"name": "b"})
        await asyncio.wait_for(b_started.wait(), 20)  # a gave its place back
        await engine.signal(sleeper, "go")
        await asyncio.sleep(0.3)  # a is due, but b holds the queue's one place
        assert order == ["a starts", "b starts"]
        release_b.set()
        await asyncio.wait_for(asyncio.gather(engine.wait(sleeper), engine.wait(other)), 20)
        records = [await engine.store.get_run(i) for i in (sleeper, other)]
        spans = await running_spans(engine.store, records)
    assert order == ["a starts", "b starts", "b wakes", "a starts", "a wakes"]
    assert most_at_once(spans) == 1


async def test_engine_run_waits_its_turn_in_the_queue(migrated_url: str) -> None:
    flow = busy(queue="one")
    async with Engine(
        migrated_url, workflows=[flow], workers=0, queues=[Queue("one", concurrency=1)]
    ) as engine:
        runs = await asyncio.wait_for(
            asyncio.gather(
                *(engine.run(flow, {"seconds": 0.05, "customer": ""}) for _ in range(4))
            ),
            20,
        )
        records = [await engine.store.get_run(run.id) for run in runs]
        spans = await running_spans(engine.store, records)
    assert {run.status for run in runs} == {RunStatus.SUCCEEDED}
    assert {run.queue for run in runs} == {"one"}
    assert most_at_once(spans) == 1


async def test_queue_mistakes_are_refused_clearly(migrated_url: str) -> None:
    flow = busy(queue="nowhere")
    loose = busy("loose")
    async with Engine(migrated_url, workflows=[flow, loose], workers=0) as engine:
        with pytest.raises(QueueNotFound, match=r"no queue is named 'nowhere' \(stored: none\)"):
            await engine.submit(flow, {"seconds": 0, "customer": ""})
        with pytest.raises(QueueNotFound, match="nowhere"):
            await engine.run(flow, {"seconds": 0, "customer": ""})
        with pytest.raises(ConfigurationError, match="queue_key 'k' is given without a queue"):
            await engine.submit(loose, {"seconds": 0, "customer": ""}, queue_key="k")
        await engine.store.set_queue(Queue("q", per_key=1))
        keyed = Workflow(
            "keyed",
            inputs={"customer": "any"},
            config=ExecutionConfig(queue="q", queue_key="customer"),
        )

        @keyed.node
        async def greet(customer: Any) -> str:
            return f"hello {customer}"

        with pytest.raises(InvalidValue, match=r"input 'customer' is the run's key in queue 'q'"):
            await engine.submit(keyed, {"customer": ["c7"]})
        keyed_id = await engine.submit(keyed, {"customer": "c7"})
        assert (await engine.get_run(keyed_id)).queue_key == "c7"
        await engine.cancel(keyed_id)
        queued = await engine.submit(
            loose, {"seconds": 0, "customer": ""}, queue="q", queue_key="k"
        )
        with pytest.raises(IntegrityConflict, match="queue 'q' has 1 runs that have not ended"):
            await engine.store.remove_queue("q")
        await engine.cancel(queued)
        await engine.store.remove_queue("q")
        assert await engine.store.list_queues() == []
        assert await engine.list_runs() != []  # nothing else went


def test_a_queue_key_must_name_an_input() -> None:
    flow = busy(queue="q", key="nobody")
    with pytest.raises(
        DefinitionError, match=r"config\.queue_key 'nobody' must name a workflow input"
    ):
        flow.compile()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be a whole number of at least 1"),
        ({"per_key": 1.5}, "per_key must be a whole number"),
        ({"rate_limit": 3, "rate_period": 0}, "rate_period must be a number of seconds above 0"),
    ],
)
def test_a_queue_with_a_limit_that_is_none_is_refused(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Queue("q", **options)
