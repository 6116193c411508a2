"""Durable waits: sleeps and signals, with waiting runs that hold no worker, on SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pydantic import BaseModel

from flowstore import (
    Client,
    Engine,
    InvalidValue,
    NodeContext,
    RunEnded,
    RunStatus,
    StoreUnavailable,
    Workflow,
)
from flowstore.store import NodeStatus, TransitionKind
from tests.support.faults import Fault


class Decision(BaseModel):
    approved: bool
    note: str = ""


def sleeper(calls: list[str]) -> Workflow:
    flow = Workflow("sleeper", output="after")

    @flow.node
    async def nap(seconds: float, ctx: NodeContext) -> str:
        calls.append(f"nap, {ctx.waits_resumed} waits over")
        await ctx.sleep(seconds)
        calls.append("nap woke")
        return "rested"

    @flow.node
    async def after(nap: str) -> str:
        return nap.upper()

    return flow


async def test_a_sleeping_run_is_stored_waiting_with_no_owner_and_ends_when_due(
    migrated_url: str,
) -> None:
    calls: list[str] = []
    flow = sleeper(calls)
    async with Engine(migrated_url, workflows=[flow], workers=0, poll_seconds=0.05) as engine:
        started = time.monotonic()
        task = asyncio.create_task(engine.run(flow, {"seconds": 0.6}))
        await asyncio.sleep(0.3)
        [waiting] = await engine.list_runs()
        assert (waiting.status, waiting.wake_at is not None) == (RunStatus.WAITING, True)
        record = await engine.store.get_run(waiting.id)
        assert (record.lease_owner, record.lease_expires_at) == (None, None)
        assert engine.executing == 0  # no worker holds it
        [nap] = await engine.store.read_node_executions(waiting.id)
        assert nap.status is NodeStatus.WAITING
        run = await asyncio.wait_for(task, 10)
        assert time.monotonic() - started >= 0.6
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "RESTED")
    # The node ran again from its start after the sleep, and knew it.
    assert calls == ["nap, 0 waits over", "nap, 1 waits over", "nap woke"]


async def test_a_signal_sent_later_wakes_the_run_and_is_taken_once(migrated_url: str) -> None:
    flow = Workflow("review", output="publish")
    drafts: list[int] = []

    @flow.node
    async def review(text: str, ctx: NodeContext) -> dict[str, Any]:
        drafts.append(ctx.waits_resumed)
        decision = await ctx.wait_for_signal("decision", model=Decision)
        return {"text": text, "approved": decision.approved, "note": decision.note}

    @flow.node
    async def publish(review: dict[str, Any]) -> str:
        return f"{review['text']}: {'yes' if review['approved'] else 'no'} ({review['note']})"

    async with Engine(migrated_url, workflows=[flow], poll_seconds=0.05) as engine:
        run_id = await engine.submit(flow, {"text": "post"})
        for _ in range(100):
            if (await engine.get_run(run_id)).status is RunStatus.WAITING:
                break
            await asyncio.sleep(0.05)
        assert engine.executing == 0
        async with Client(migrated_url, poll_seconds=0.05) as client:
            await client.signal(run_id, "decision", {"approved": "maybe"})
            failed = await asyncio.wait_for(client.wait(run_id), 10)
            # A payload its model refuses fails the node loudly, and is not taken.
            assert failed.status is RunStatus.FAILED and failed.error is not None
            assert "signal 'decision': its payload is not a Decision" in failed.error["message"]
            [bad] = await client.store.list_signals(run_id)
            assert bad.consumed_at is None
        good_id = await engine.submit(flow, {"text": "post"})
        for _ in range(100):
            if (await engine.get_run(good_id)).status is RunStatus.WAITING:
                break
            await asyncio.sleep(0.05)
        await engine.signal(good_id, "decision", {"approved": True, "note": "fine"})
        run = await asyncio.wait_for(engine.wait(good_id), 10)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "post: yes (fine)")
    assert drafts == [0, 1, 0, 1]  # each review ran again from its start when woken


async def test_signals_before_the_wait_twice_with_a_key_and_to_an_ended_run(
    migrated_url: str,
) -> None:
    flow = Workflow("gate", output="gate")

    @flow.node
    async def gate(ctx: NodeContext) -> list[Any]:
        first = await ctx.wait_for_signal("go")
        second = await ctx.wait_for_signal("go", timeout=0.3, default="late")
        return [first, second]

    async with Engine(migrated_url, workflows=[flow], workers=0, poll_seconds=0.05) as engine:
        run_id = await engine.submit(flow, {})
        await engine.signal(run_id, "go", 1, idempotency_key="k")  # before the run even starts
        await engine.signal(run_id, "go", 2, idempotency_key="k")  # the same key: harmless
        run = await engine.resume(run_id)
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, [1, "late"])
        [signal] = await engine.store.list_signals(run_id)
        assert (signal.payload, signal.consumed_at is not None) == (1, True)
        with pytest.raises(RunEnded, match=f"run {run_id} has ended"):
            await engine.signal(run_id, "go", 3)
        waits = await engine.store.read_waits(run_id)
        assert [(w.seq, w.kind, w.outcome) for w in waits] == [
            (1, "signal", "signalled"),
            (2, "signal", "timed_out"),
        ]
        events = [
            t.payload["outcome"]
            for t in await engine.store.read_transitions(run_id)
            if t.kind is TransitionKind.EVENT and t.name == "wait"
        ]
        assert events == ["signalled", None, "timed_out"]


async def test_a_wait_that_times_out_without_a_default_fails_the_node(migrated_url: str) -> None:
    flow = Workflow("deadline")

    @flow.node
    async def approve(ctx: NodeContext) -> Any:
        return await ctx.wait_for_signal("approval", timeout=0.2)

    async with Engine(migrated_url, workflows=[flow], workers=0, poll_seconds=0.05) as engine:
        run = await asyncio.wait_for(engine.run(flow, {}), 10)
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error["type"] == "flowstore.runtime.waits.SignalTimeout"
    assert "no signal 'approval' came before the wait timed out" in run.error["message"]


async def test_a_waiting_run_is_cancelled_at_once(migrated_url: str) -> None:
    flow = Workflow("forever")

    @flow.node
    async def hold(ctx: NodeContext) -> Any:
        return await ctx.wait_for_signal("never")

    async with Engine(migrated_url, workflows=[flow], poll_seconds=0.05) as engine:
        run_id = await engine.submit(flow, {})
        for _ in range(100):
            if (await engine.get_run(run_id)).status is RunStatus.WAITING:
                break
            await asyncio.sleep(0.05)
        cancelled = await engine.cancel(run_id)
        assert cancelled.status is RunStatus.CANCELLED


async def test_the_dsl_waits_with_the_sleep_and_signal_node_types(migrated_url: str) -> None:
    flow = Workflow.load(
        {
            "name": "dsl_waits",
            "nodes": [
                {"name": "cool_off", "type": "sleep", "config": {"seconds": 0.3}},
                {
                    "name": "approval",
                    "type": "signal",
                    "config": {"name": "approval", "timeout": 30},
                    "after": ["cool_off"],
                },
            ],
        }
    )
    async with Engine(migrated_url, workflows=[flow], poll_seconds=0.05) as engine:
        run_id = await engine.submit(flow, {})
        await engine.signal(run_id, "approval", {"approved": True})  # kept until it waits
        run = await asyncio.wait_for(engine.wait(run_id), 10)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, {"approved": True})


async def test_a_payload_the_declared_model_refuses_is_not_sent(migrated_url: str) -> None:
    flow = Workflow("declared", signals={"decision": Decision}, output="review")

    @flow.node
    async def review(ctx: NodeContext) -> Decision:
        decision: Decision = await ctx.wait_for_signal("decision")  # the declared model
        return decision

    async with Engine(migrated_url, workflows=[flow], poll_seconds=0.05) as engine:
        run_id = await engine.submit(flow, {})
        async with Client(migrated_url, poll_seconds=0.05) as client:
            for sender in (engine, client):
                with pytest.raises(InvalidValue, match="the payload is not a Decision"):
                    await sender.signal(run_id, "decision", {"approved": "maybe"})
            assert await engine.store.list_signals(run_id) == []  # nothing stored
            await client.signal(run_id, "decision", {"approved": True, "note": "ok"})
            run = await asyncio.wait_for(client.wait(run_id), 10)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, {"approved": True, "note": "ok"})


async def test_resuming_a_run_that_waits_takes_it_up_when_it_is_due(migrated_url: str) -> None:
    calls: list[str] = []
    flow = sleeper(calls)
    async with (
        Engine(migrated_url, workflows=[flow], workers=0, poll_seconds=0.05) as first,
        Engine(migrated_url, workflows=[flow], workers=0, poll_seconds=0.05) as second,
    ):
        run_id = await first.submit(flow, {"seconds": 0.8})
        running = asyncio.create_task(first.resume(run_id))
        for _ in range(200):
            if (await first.get_run(run_id)).status is RunStatus.WAITING:
                break
            await asyncio.sleep(0.02)
        # Not due yet, and owned by nobody: `resume` waits for it, and ends it if it can.
        run = await asyncio.wait_for(second.resume(run_id), 10)
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, "RESTED")
        assert (await asyncio.wait_for(running, 10)).status is RunStatus.SUCCEEDED
    assert calls.count("nap woke") == 1


async def test_time_waited_is_in_the_wait_stats_view_and_not_in_node_durations(
    migrated_url: str,
) -> None:
    calls: list[str] = []
    flow = sleeper(calls)
    gate = Workflow("gate")

    @gate.node
    async def knock(ctx: NodeContext) -> Any:
        return await ctx.wait_for_signal("go", timeout=0.3, default="late")

    hold = Workflow("hold")

    @hold.node
    async def stay(ctx: NodeContext) -> Any:
        return await ctx.wait_for_signal("never")

    async with Engine(migrated_url, workflows=[flow, gate, hold], poll_seconds=0.05) as engine:
        assert (await engine.run(flow, {"seconds": 0.5})).status is RunStatus.SUCCEEDED
        assert (await engine.run(gate, {})).output == "late"
        held = await engine.submit(hold, {})
        for _ in range(200):
            if (await engine.get_run(held)).status is RunStatus.WAITING:
                break
            await asyncio.sleep(0.02)
        stats = {(s.workflow, s.node, s.kind, s.name): s for s in await engine.store.wait_stats()}
        nodes = {(n.workflow, n.node): n for n in await engine.store.node_stats()}
        assert [s.workflow for s in await engine.store.wait_stats(workflow="gate")] == ["gate"]
    nap = stats[("sleeper", "nap", "sleep", None)]
    assert (nap.waits, nap.woke, nap.open) == (1, 1, 0)
    assert nap.p50_ms is not None and nap.p50_ms >= 500
    assert nap.p50_ms == nap.p95_ms == nap.mean_ms == nap.max_ms
    timed_out = stats[("gate", "knock", "signal", "go")]
    assert (timed_out.timed_out, timed_out.signalled) == (1, 0)
    assert timed_out.p50_ms is not None and timed_out.p50_ms >= 300
    still = stats[("hold", "stay", "signal", "never")]
    assert (still.waits, still.open, still.p50_ms) == (1, 1, None)
    assert still.oldest_open_since is not None and still.oldest_open_since.tzinfo is not None
    # The node's duration is that of its last execution, after the sleep.
    nap_duration = nodes[("sleeper", "nap")].p50_ms
    assert nap_duration is not None and nap_duration < 500


async def test_many_runs_waiting_at_once_under_store_faults_each_take_their_signal_once(
    migrated_url: str,
) -> None:
    flow = Workflow("many", output="finish")
    taken: list[tuple[int, int]] = []

    @flow.node
    async def wait(n: int, ctx: NodeContext) -> int:
        got: int = await ctx.wait_for_signal("go")
        taken.append((n, got))
        return got

    @flow.node
    async def finish(n: int, wait: int) -> int:
        return n * 1000 + wait

    count = 40
    async with (
        Engine(migrated_url, workflows=[flow], workers=3, poll_seconds=0.05) as first,
        Engine(migrated_url, workflows=[flow], workers=3, poll_seconds=0.05) as second,
        Client(migrated_url, poll_seconds=0.05) as client,
    ):
        # Every seventh commit of each worker fails: its run is released and taken up again.
        for engine in (first, second):
            Fault(
                engine.store,
                "record_transitions",
                lambda call: call % 7 == 0,
                StoreUnavailable("recording transitions: database is locked"),
            )
        run_ids = [await client.submit("many", {"n": n}) for n in range(count)]
        for _ in range(500):
            waiting = await client.list_runs(status=RunStatus.WAITING, limit=count)
            if len(waiting) == count:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the runs never all waited")

        async def send(n: int, run_id: str) -> None:
            for _ in range(2):  # sent twice, as a retrying sender would: taken once
                await client.signal(run_id, "go", n, idempotency_key=f"go-{n}")

        await asyncio.gather(*(send(n, run_id) for n, run_id in enumerate(run_ids)))
        runs = [await asyncio.wait_for(client.wait(run_id), 60) for run_id in run_ids]
        signals = [await client.store.list_signals(run_id) for run_id in run_ids]
    assert [run.output for run in runs] == [n * 1000 + n for n in range(count)]
    assert all(len(sent) == 1 and sent[0].consumed_at is not None for sent in signals)
    # Past its wait, a node ran once per run, but where a fault cut its commit short.
    assert sorted(set(taken)) == [(n, n) for n in range(count)]
    assert len(taken) <= count * 2
