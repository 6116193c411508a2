"""Metrics, spans and the SQL views over them; the documented SQL queries, on both backends."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from flowstore import Cache, Retry, Workflow
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine
from flowstore.store import NewRun, RunId, RunStatus, WorkerId

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def analytics_flow() -> Workflow:
    flow = Workflow("analytics", output="check")

    @flow.node(retry=Retry(attempts=2, backoff=0, jitter=False))
    async def fetch(doc: str, ctx: NodeContext) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("flaky source")
        return doc

    @flow.node(cache=Cache())
    async def embed(fetch: str) -> int:
        return len(fetch)

    @flow.node
    async def check(embed: int, doc: str) -> int:
        if doc == "bad":
            raise ValueError("bad document")
        return embed

    return flow


async def _populate(engine: Engine) -> dict[str, Any]:
    flow = analytics_flow()
    ok = await engine.run(flow, {"doc": "hello"})
    cached = await engine.run(flow, {"doc": "hello"})
    failed = await engine.run(flow, {"doc": "bad"})
    assert (ok.status, cached.status, failed.status) == (
        RunStatus.SUCCEEDED,
        RunStatus.SUCCEEDED,
        RunStatus.FAILED,
    )
    return {"ok": ok, "cached": cached, "failed": failed}


async def _populate_waits(url: str) -> None:
    """A run that slept, then waits for a signal that has not come."""
    flow = Workflow("approval")

    @flow.node
    async def review(ctx: NodeContext) -> Any:
        await ctx.sleep(0.05)
        return await ctx.wait_for_signal("decision")

    async with Engine(url, workflows=[flow], poll_seconds=0.05) as engine:
        run_id = await engine.submit(flow, {})
        for _ in range(500):
            waits = await engine.store.read_waits(RunId(run_id))
            if [w.kind for w in waits] == ["sleep", "signal"]:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the run never came to wait for its signal")


async def test_metrics_and_spans_are_stored_with_the_run(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        runs = await _populate(engine)
        ok = runs["ok"]
        names = sorted(m.name for m in await engine.store.list_metrics(run_id=ok.id))
        assert names == sorted(["queue_wait_ms", "node_retry", "cache_lookup", "run_succeeded_ms"])
        durations = [e.duration_ms for e in await engine.store.read_node_executions(ok.id)]
        assert len(durations) == 3 and all(d is not None and d >= 0 for d in durations)
        lookups = await engine.store.list_metrics(name="cache_lookup")
        assert [m.value for m in lookups] == [0.0, 1.0, 0.0]  # a miss, a hit, other inputs

        stored = await engine.store.list_spans(run_id=ok.id)
        # Stored: the run's span and the attempts of the retried node; the nodes' spans are
        # their execution rows, shown by the flowstore_trace view.
        assert sorted(s.name for s in stored) == ["attempt 1", "attempt 2", "run analytics"]
        spans = await engine.store.read_trace(ok.id)
        [run_span] = [s for s in spans if s.parent_span_id is None]
        nodes = {s.node: s for s in spans if s.parent_span_id == run_span.span_id}
        assert set(nodes) == {"fetch", "embed", "check"}
        assert all(s.name == f"node {s.node}" for s in nodes.values())
        attempts = [s for s in spans if s.parent_span_id == nodes["fetch"].span_id]
        assert [(s.attempt, s.status) for s in attempts] == [(1, "failed"), (2, "succeeded")]
        assert all(s.trace_id == run_span.trace_id and s.ended_at is not None for s in spans)
        assert run_span.trace_id == ok.id.replace("-", "") and run_span.status == "succeeded"


async def test_the_views_sum_up_nodes_runs_and_errors(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        await _populate(engine)
        nodes = {n.node: n for n in await engine.store.node_stats(workflow="analytics")}
        assert (nodes["fetch"].executions, nodes["fetch"].retries) == (3, 3)
        assert nodes["check"].executions == 3
        assert nodes["check"].success_rate == pytest.approx(2 / 3)
        assert nodes["fetch"].success_rate == 1.0
        assert nodes["embed"].cache_lookups == 3
        assert nodes["embed"].cache_hit_rate == pytest.approx(1 / 3)
        for node in nodes.values():
            assert node.p50_ms is not None and node.p95_ms is not None
            assert 0 <= node.p50_ms <= node.p95_ms
        [runs] = await engine.store.run_stats(workflow="analytics")
        assert (runs.runs, runs.succeeded, runs.failed, runs.cancelled) == (3, 2, 1, 0)
        assert runs.success_rate == pytest.approx(2 / 3)
        assert runs.p50_ms is not None and runs.mean_queue_wait_ms is not None


async def test_a_submitted_run_records_how_long_it_waited_in_the_queue(
    migrated_url: str,
) -> None:
    flow = Workflow("queued")

    @flow.node
    async def work(n: int) -> int:
        return n

    async with Engine(migrated_url, workers=0) as submitter:
        run_ids = [await submitter.submit(flow, {"n": n}) for n in range(2)]
        await asyncio.sleep(0.3)
        async with Engine(migrated_url, workflows=[flow], poll_seconds=0.05) as worker:
            for run_id in run_ids:
                await asyncio.wait_for(worker.wait(run_id), 10)
        [runs] = await submitter.store.run_stats(workflow="queued")
    assert runs.mean_queue_wait_ms is not None and runs.mean_queue_wait_ms >= 300


async def test_without_telemetry_nothing_is_measured(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0, telemetry=False) as engine:
        run = await engine.run(analytics_flow(), {"doc": "hello"})
        assert run.status is RunStatus.SUCCEEDED
        assert await engine.store.list_metrics() == []
        assert await engine.store.list_spans() == []


async def _populate_schedules(url: str) -> None:
    """A schedule that started a tick."""
    flow = Workflow("scheduled")

    @flow.node
    async def tick() -> str:
        return "ticked"

    async with Engine(url, workflows=[flow], poll_seconds=0.05) as engine:
        await engine.schedule(flow, "often", every=60)
        for _ in range(500):
            if (await engine.store.get_schedule("often")).started:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the schedule never started its first tick")


def documented_queries() -> list[str]:
    """Every SQL block of the README and the docs."""
    return [
        query
        for page in DOCUMENTED
        for query in re.findall(r"```sql\n(.*?)```", page.read_text(), re.DOTALL)
    ]


def test_the_docs_show_at_least_five_queries() -> None:
    assert len(documented_queries()) >= 5


@pytest.mark.parametrize("query", documented_queries(), ids=lambda q: q.split("\n")[0][:40])
async def test_each_documented_query_runs_and_finds_rows(migrated_url: str, query: str) -> None:
    await _populate_waits(migrated_url)
    await _populate_schedules(migrated_url)
    async with Engine(migrated_url, workers=0) as engine:
        runs = await _populate(engine)
        # A run in flight, owned by a worker.
        await engine.store.create_run(
            NewRun("analytics", "1", runs["ok"].graph_hash, {"doc": "x"}, owner=WorkerId("w"))
        )
        statement = text(query)
        parameters = {"run_id": runs["ok"].id} if ":run_id" in query else {}
        async with engine.store.engine.connect() as conn:
            rows = (await conn.execute(statement, parameters)).all()
    assert rows, f"no rows from:\n{query}"
