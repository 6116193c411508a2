"""A node's output is the same value for its dependents live and after a resume: rebuilt by
its return annotation (a datetime, a set, a tuple, integer keys, NaN), or, with no
annotation, the JSON it is stored as either way. A value too deep to store is a named error."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel

from flowstore import InvalidValue, Workflow
from flowstore.runtime.engine import Engine
from flowstore.store import RunId, RunStatus

AT = datetime(2026, 11, 27, 12, 30, tzinfo=UTC)


def values(seen: list[dict[str, Any]], gate: asyncio.Event, looked: asyncio.Event) -> Workflow:
    flow = Workflow("values")

    @flow.node
    async def when(n: int) -> datetime:
        return AT

    @flow.node
    async def tags(n: int) -> set[str]:
        return {"b", "a"}

    @flow.node
    async def pair(n: int) -> tuple[int, str]:
        return (n, "x")

    @flow.node
    async def table(n: int) -> dict[int, str]:
        return {n: "one", 2: "two"}

    @flow.node
    async def ratio(n: int) -> float:
        return math.nan if n else math.inf

    @flow.node
    async def loose(n: int):  # type: ignore[no-untyped-def]
        return {"at": AT, "pair": (1, 2)}

    @flow.node
    async def look(when, tags, pair, table, ratio, loose):  # type: ignore[no-untyped-def]
        looked.set()
        seen.append(dict(when=when, tags=tags, pair=pair, table=table, ratio=ratio, loose=loose))
        await gate.wait()
        return len(seen)

    return flow


async def test_dependents_see_the_same_values_live_and_after_a_resume(migrated_url: str) -> None:
    seen: list[dict[str, Any]] = []
    gate, looked = asyncio.Event(), asyncio.Event()
    flow = values(seen, gate, looked)
    async with Engine(migrated_url, workers=0) as engine:
        running = asyncio.create_task(engine.run(flow, {"n": 1}, run_id="v1"))
        await looked.wait()
    # The engine closed while `look` waited: released. Resumed elsewhere, `look` runs again.
    await asyncio.gather(running, return_exceptions=True)
    gate.set()
    async with Engine(migrated_url, workflows=[values(seen, gate, looked)], workers=0) as engine:
        run = await engine.resume("v1")
    assert run.status is RunStatus.SUCCEEDED, run.error
    live, resumed = seen
    for value in (live, resumed):  # equal values of the same types, live and resumed
        assert value["when"] == AT and isinstance(value["when"], datetime)
        assert value["tags"] == {"a", "b"}
        assert value["pair"] == (1, "x")
        assert value["table"] == {1: "one", 2: "two"}
        assert math.isnan(value["ratio"])
        # No annotation: the JSON it is stored as, live too.
        assert value["loose"] == {"at": "2026-11-27T12:30:00Z", "pair": [1, 2]}


async def test_a_value_nested_too_deeply_fails_its_node_with_a_named_error(
    migrated_url: str,
) -> None:
    flow = Workflow("deep")

    @flow.node
    async def nest(n: int) -> Any:
        value: list[Any] = []
        inner = value
        for _ in range(10_000):
            inner.append([])
            inner = inner[0]
        return value

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"n": 1})
        [report] = await engine.store.list_errors(run_id=run.id)
    assert run.status is RunStatus.FAILED
    assert run.error["type"] == "flowstore.errors.UnserializableValue"
    assert "output of node 'nest'" in run.error["message"]
    assert "nested too deeply" in run.error["message"]
    assert len(report.traceback) < 20_000


async def test_a_map_interrupted_at_item_700_runs_only_its_unfinished_items_again(
    migrated_url: str,
) -> None:
    from collections import Counter

    from flowstore.runtime.context import NodeContext

    calls: Counter[int] = Counter()
    keys: set[str] = set()
    hold = {"on": True}
    seven_hundred = asyncio.Event()

    def define() -> Workflow:
        flow = Workflow("big-map")

        @flow.node
        async def items(n: int) -> list[int]:
            return list(range(n))

        @flow.node(map={"over": "items", "concurrency": 10})
        async def square(item: int, ctx: NodeContext) -> int:
            calls[item] += 1
            keys.add(ctx.idempotency_key)
            if item >= 700 and hold["on"]:
                if sum(1 for i in calls if i < 700) == 700:
                    seven_hundred.set()
                await asyncio.sleep(60)  # "killed" here
            return item * item

        return flow

    async with Engine(migrated_url, workers=0) as engine:
        running = asyncio.create_task(engine.run(define(), {"n": 1000}, run_id="map"))
        await seven_hundred.wait()
        # Until the first 700 items' results are in the log.
        for _ in range(500):
            done = await engine.store.read_events(RunId("map"), "map_item", node="square", key="")
            if len(done) >= 700:
                break
            await asyncio.sleep(0.02)
    await asyncio.gather(running, return_exceptions=True)  # released when the engine closed
    recorded = {payload["item"] for payload in done}
    hold["on"] = False
    async with Engine(migrated_url, workflows=[define()], workers=0) as engine:
        run = await engine.resume("map")
    assert run.status is RunStatus.SUCCEEDED, run.error
    assert run.output == [item * item for item in range(1000)]
    assert all(calls[item] == 1 for item in recorded)  # never called again
    assert set(range(700)) <= recorded
    assert sum(calls.values()) <= 1000 + 10  # at most the ten in flight ran twice
    assert len(keys) == 1000  # one idempotency key per item


class Ticket(BaseModel):
    id: int
    tags: set[str]


async def test_a_run_output_reads_back_as_its_type(migrated_url: str) -> None:
    flow = Workflow("typed_output")

    @flow.node
    async def make(n: int) -> Ticket:
        return Ticket(id=n, tags={"a", "b"})

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"n": 7})
        again = await engine.get_run(run.id)
    assert run.output_as(Ticket) == again.output_as(Ticket) == Ticket(id=7, tags={"a", "b"})
    with pytest.raises(InvalidValue, match=r"is not a list\[int\]: Input should be a valid list"):
        run.output_as(list[int])
