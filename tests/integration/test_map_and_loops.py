"""A subworkflow mapped over a list, each item a durable child run of its own, in Python and
in the DSL; loops whose body reads the previous iteration's outputs, across a resume; on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowstore import (
    ConfigurationError,
    DefinitionError,
    Engine,
    Loop,
    MapOver,
    NodeContext,
    RunStatus,
    Workflow,
)

handled: Counter[str] = Counter()
failing: set[str] = set()
at_once = {"now": 0, "most": 0}

child = Workflow("handle")


@child.node
async def answer(ticket: str) -> str:
    handled[ticket] += 1
    at_once["now"] += 1
    at_once["most"] = max(at_once["most"], at_once["now"])
    try:
        await asyncio.sleep(0.02)
    finally:
        at_once["now"] -= 1
    if ticket in failing:
        raise ValueError(f"cannot handle {ticket}")
    return ticket.upper()


@pytest.fixture(autouse=True)
def fresh() -> None:
    handled.clear()
    failing.clear()
    at_once.update(now=0, most=0)


def batch(concurrency: int | None = None) -> Workflow:
    parent = Workflow("batch", inputs={"tickets": list}, output="each")
    parent.subworkflow(
        "each",
        child,
        inputs={"ticket": "item"},
        map=MapOver(over="tickets", concurrency=concurrency),
    )
    return parent


async def test_a_subworkflow_maps_over_a_list_one_child_run_per_item(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[batch(concurrency=2)], workers=0) as engine:
        run = await engine.run(batch(concurrency=2), {"tickets": ["a", "b", "c", "d"]})
        children = await engine.list_runs(workflow="handle")
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, ["A", "B", "C", "D"])
    assert sorted(child.inputs["ticket"] for child in children) == ["a", "b", "c", "d"]
    assert {child.parent_run_id for child in children} == {run.id}
    assert at_once["most"] == 2


async def test_a_failed_item_runs_again_alone_when_the_parent_is_resumed(
    migrated_url: str,
) -> None:
    failing.add("b")
    async with Engine(migrated_url, workflows=[batch()], workers=0) as engine:
        failed = await engine.run(batch(), {"tickets": ["a", "b", "c"]})
        assert failed.status is RunStatus.FAILED
        assert "cannot handle b" in failed.error["message"]
        failing.clear()
        resumed = await engine.resume(failed.id)
        children = await engine.list_runs(workflow="handle")
    assert (resumed.status, resumed.output) == (RunStatus.SUCCEEDED, ["A", "B", "C"])
    assert handled == Counter({"a": 1, "b": 2, "c": 1})  # a and c ran once, in their runs
    assert len(children) == 3


async def test_the_dsl_binds_each_item_to_the_child_input_named_like_it(
    migrated_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "batch.yaml"
    path.write_text(
        "name: batch_dsl\n"
        "inputs: {tickets: list}\n"
        "nodes:\n"
        "  - name: each\n"
        "    workflow: handle\n"
        "    map: {over: tickets, item: ticket}\n"
    )
    pytest.importorskip("yaml")
    flow = Workflow.load(path)
    async with Engine(migrated_url, workflows=[child, flow], workers=0) as engine:
        run = await engine.run(flow, {"tickets": ["x", "y"]})
    assert run.output == ["X", "Y"]
    unbound = tmp_path / "unbound.yaml"
    unbound.write_text(path.read_text().replace("item: ticket", "item: thing"))
    with pytest.raises(DefinitionError, match=r"input 'ticket' of workflow 'handle' is not bound"):
        Engine(migrated_url, workflows=[child, Workflow.load(unbound)])


def accumulating(calls: Counter[str], fail_at: set[int]) -> Workflow:
    flow = Workflow("accumulate", output="total")

    @flow.node
    async def start(step: int) -> int:
        return step

    @flow.node
    async def add(start: int, ctx: NodeContext) -> int:
        calls[f"add {ctx.iteration}"] += 1
        if ctx.iteration in fail_at:
            fail_at.discard(ctx.iteration)
            raise ConnectionError("flaky")
        return ctx.previous("add", 0) + start

    @flow.node(loop=Loop(back_to="add", while_="add < 10", max_iterations=20))
    async def total(add: int, ctx: NodeContext) -> dict[str, Any]:
        before = ctx.previous("total")
        return {"sum": add, "iteration": ctx.iteration, "before": before and before["sum"]}

    return flow


async def test_a_loop_body_reads_its_previous_iteration_even_after_a_resume(
    migrated_url: str,
) -> None:
    calls: Counter[str] = Counter()
    flow = accumulating(calls, fail_at={2})
    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        failed = await engine.run(flow, {"step": 3})
        assert failed.status is RunStatus.FAILED
        resumed = await engine.resume(failed.id)
    assert resumed.status is RunStatus.SUCCEEDED
    # 3, 6, 9, 12: the fourth iteration ends the loop; the third failed once and was resumed.
    assert resumed.output == {"sum": 12, "iteration": 3, "before": 9}
    assert calls == Counter({"add 0": 1, "add 1": 1, "add 2": 2, "add 3": 1})


async def test_previous_is_only_for_the_nodes_own_loop(migrated_url: str) -> None:
    flow = Workflow("outside")

    @flow.node
    async def lonely(ctx: NodeContext) -> Any:
        return ctx.previous("lonely")

    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        run = await engine.run(flow, {})
    assert run.status is RunStatus.FAILED
    assert ConfigurationError.__name__ in run.error["type"]
    assert "it is in no loop" in run.error["message"]
