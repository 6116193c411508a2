"""The engine and executor against a real store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import pytest

from flowstore import ExecutionConfig, Workflow
from flowstore.errors import ExecutionError, IntegrityConflict, InvalidValue, LeaseLost
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine
from flowstore.store import NodeChange, NodeStatus, RunId, RunStatus, TransitionKind, WorkerId


def triage(durability: Literal["sync", "batched"] = "sync") -> Workflow:
    flow = Workflow("triage", config=ExecutionConfig(durability=durability))

    @flow.node
    async def classify(ticket: str) -> str:
        return "urgent" if "down" in ticket else "normal"

    @flow.node
    def draft(classify: str, ticket: str) -> str:  # sync: runs in a worker thread
        return f"[{classify}] {ticket}"

    @flow.node(when="classify == 'urgent'")
    async def page(draft: str) -> str:
        return f"paged: {draft}"

    @flow.node(join="all_done")
    async def report(draft: str, page: str | None = None) -> dict[str, Any]:
        return {"draft": draft, "paged": page is not None}

    return flow


@pytest.mark.parametrize("durability", ["sync", "batched"])
async def test_a_run_executes_and_records_every_transition(
    migrated_url: str, durability: Literal["sync", "batched"]
) -> None:
    async with Engine(migrated_url, workflows=[triage(durability)]) as engine:
        urgent = await engine.run(triage(durability), {"ticket": "site down"})
        calm = await engine.run(triage(durability), {"ticket": "typo"})

        assert urgent.status is RunStatus.SUCCEEDED
        assert urgent.output == {"draft": "[urgent] site down", "paged": True}
        assert calm.output == {"draft": "[normal] typo", "paged": False}

        nodes = {n.node: n for n in await engine.store.read_node_executions(calm.id)}
        assert nodes["page"].status is NodeStatus.SKIPPED
        assert nodes["draft"].input == {"classify": "normal", "ticket": "typo"}
        assert nodes["draft"].output == "[normal] typo"
        log = await engine.store.read_transitions(calm.id)
        assert [t.seq for t in log] == list(range(1, len(log) + 1))
        for name, execution in nodes.items():
            last = [t for t in log if t.node == name][-1]
            assert (last.seq, last.status) == (execution.updated_seq, execution.status.value)
        assert log[-1].kind is TransitionKind.RUN and log[-1].status == "succeeded"

        listed = await engine.list_runs(workflow="triage", status=RunStatus.SUCCEEDED)
        assert [run.id for run in listed] == [calm.id, urgent.id]


async def test_routers_maps_streams_and_the_context(migrated_url: str) -> None:
    flow = Workflow("shapes", output="lines")
    keys: list[str] = []

    @flow.node(routes=["shout", "whisper"])
    async def route(text: str) -> str:
        return "shout" if text.endswith("!") else "whisper"

    @flow.node
    async def shout(text: str) -> list[str]:
        return text.upper().split()

    @flow.node
    async def whisper(text: str) -> list[str]:
        return text.lower().split()

    @flow.node(map={"over": "shout", "concurrency": 2})
    async def letters(item: str, ctx: NodeContext) -> int:
        keys.append(ctx.idempotency_key)
        return len(item)

    @flow.node
    async def stream(letters: list[int]) -> AsyncIterator[str]:
        for count in letters:
            yield str(count)

    @flow.node
    def lines(stream: str) -> Iterator[str]:
        yield stream
        yield "."

    async with Engine(migrated_url) as engine:
        run = await engine.run(flow, {"text": "go now!"})
        assert run.status is RunStatus.SUCCEEDED, run.error
        assert run.output == "24."
        nodes = {n.node: n.status for n in await engine.store.read_node_executions(run.id)}
        assert nodes["whisper"] is NodeStatus.SKIPPED
        assert nodes["letters"] is NodeStatus.SUCCEEDED
        # Each item has its own key: an outside service never takes item 2 for item 1.
        assert sorted(keys) == [f"{run.id}/letters#0", f"{run.id}/letters#1"]


async def test_a_failing_node_fails_the_run_and_cancels_the_others(migrated_url: str) -> None:
    flow = Workflow("failing")
    cancelled = asyncio.Event()

    @flow.node
    async def slow(ticket: str) -> str:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return ticket

    @flow.node
    async def broken(ticket: str) -> str:
        await asyncio.sleep(0.05)
        raise KeyError("missing")

    async with Engine(migrated_url) as engine:
        run = await engine.run(flow, {"ticket": "x"})
        assert run.status is RunStatus.FAILED
        assert run.error["node"] == "broken"
        assert run.error["type"] == "builtins.KeyError"
        assert "Traceback" in run.error["traceback"]
        assert cancelled.is_set()
        nodes = {n.node: n.status for n in await engine.store.read_node_executions(run.id)}
        assert nodes == {"slow": NodeStatus.CANCELLED, "broken": NodeStatus.FAILED}


async def test_invalid_inputs_are_refused_before_a_run_exists(migrated_url: str) -> None:
    async with Engine(migrated_url) as engine:
        with pytest.raises(InvalidValue, match="ticket: Input should be a valid string"):
            await engine.run(triage(), {"ticket": 5})
        assert await engine.list_runs() == []


async def test_a_run_is_stored_with_the_start_of_its_first_nodes(migrated_url: str) -> None:
    # `sync`: creating the run and starting its first node are one commit, then one commit per
    # node end (with the next start), the last one with the run's end: 3 writes for 2 nodes.
    flow = Workflow("pair")

    @flow.node
    async def first(n: int) -> int:
        return n + 1

    @flow.node
    async def second(first: int) -> int:
        return first * 2

    async with Engine(migrated_url, workers=0, workflows=[flow]) as engine:
        store = engine.store
        writes: list[tuple[str, list[Any]]] = []
        record, create = store.record_transitions, store.create_run

        async def recording(run_id: RunId, fencing: int, changes: Any, **kw: Any) -> Any:
            made = kw.get("create")
            writes.append(("create+record" if made else "record", list(changes)))
            return await record(run_id, fencing, changes, **kw)

        async def creating(new: Any) -> Any:
            writes.append(("create", []))
            return await create(new)

        store.record_transitions, store.create_run = recording, creating
        run = await engine.run(flow, {"n": 1})
        store.record_transitions, store.create_run = record, create

        assert (run.status, run.output) == (RunStatus.SUCCEEDED, 4)
        assert [kind for kind, _ in writes] == ["create+record", "record", "record"]
        assert [(c.node, c.status) for c in writes[0][1] if isinstance(c, NodeChange)] == [
            ("first", NodeStatus.RUNNING)
        ]
        log = await store.read_transitions(run.id)
        assert [(t.kind, t.node, t.status) for t in log[:2]] == [
            (TransitionKind.RUN, None, "running"),
            (TransitionKind.NODE, "first", "running"),
        ]
        assert [t.seq for t in log] == list(range(1, len(log) + 1))
        stored = await engine.get_run(run.id)
        assert stored.started_at is not None and stored.finished_at is not None


async def test_a_run_id_that_is_taken_fails_and_runs_nothing(migrated_url: str) -> None:
    calls = []
    flow = Workflow("once")

    @flow.node
    async def only(n: int) -> int:
        calls.append(n)
        return n

    async with Engine(migrated_url, workers=0, workflows=[flow]) as engine:
        first = await engine.run(flow, {"n": 1}, run_id="taken")
        log = await engine.store.read_transitions(RunId("taken"))
        with pytest.raises(IntegrityConflict, match="creating run taken of 'once'"):
            await engine.run(flow, {"n": 2}, run_id="taken")
        assert calls == [1]
        assert await engine.store.read_transitions(RunId("taken")) == log
        again = await engine.get_run("taken")
        assert (again.status, again.output, again.inputs) == (first.status, 1, {"n": 1})


async def test_an_interrupted_run_resumes_without_rerunning_what_succeeded(
    migrated_url: str,
) -> None:
    calls: dict[str, int] = {"first": 0, "second": 0}
    started = asyncio.Event()
    release = asyncio.Event()

    def define() -> Workflow:
        flow = Workflow("resumable")

        @flow.node
        async def first(ticket: str) -> str:
            calls["first"] += 1
            return ticket.upper()

        @flow.node
        async def second(first: str) -> str:
            calls["second"] += 1
            started.set()
            await release.wait()
            return first + "!"

        return flow

    async with Engine(migrated_url, workflows=[define()]) as engine:
        task = asyncio.create_task(engine.run(define(), {"ticket": "abc"}))
        await started.wait()
    # The engine closed while `second` ran: the run was released for another worker.
    with pytest.raises(asyncio.CancelledError):
        await task

    release.set()
    async with Engine(migrated_url, workflows=[define()], workers=0) as engine:
        [interrupted] = await engine.list_runs()
        record = await engine.store.get_run(interrupted.id)
        assert (record.status, record.lease_owner) == (RunStatus.RUNNING, None)
        resumed = await engine.resume(interrupted.id)
        assert resumed.status is RunStatus.SUCCEEDED
        assert resumed.output == "ABC!"
        assert calls == {"first": 1, "second": 2}
        statuses = [
            t.status for t in await engine.store.read_transitions(resumed.id) if t.node == "second"
        ]
        assert statuses == ["running", "recovered", "running", "succeeded"]
        with pytest.raises(ExecutionError, match="has already ended"):
            await engine.resume(resumed.id)


async def test_resuming_under_a_changed_definition_is_refused(migrated_url: str) -> None:
    started = asyncio.Event()

    def define(suffix: str) -> Workflow:
        flow = Workflow("changing")

        @flow.node(name=f"step{suffix}")
        async def step(ticket: str) -> str:
            started.set()
            await asyncio.sleep(30)
            return ticket

        return flow

    async with Engine(migrated_url) as engine:
        task = asyncio.create_task(engine.run(define("a"), {"ticket": "x"}))
        await started.wait()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with Engine(migrated_url, workflows=[define("b")], workers=0) as engine:
        [run] = await engine.list_runs()
        with pytest.raises(ExecutionError, match="started under another definition"):
            await engine.resume(run.id)


async def test_submitted_runs_are_executed_by_workers_and_waited_for(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[triage()], workers=2) as engine:
        ids = [await engine.submit(triage(), {"ticket": f"t{i} down"}) for i in range(6)]
        async with asyncio.timeout(60):
            runs = [await engine.wait(run_id) for run_id in ids]
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 6
    assert runs[3].output == {"draft": "[urgent] t3 down", "paged": True}


async def test_an_engine_that_starts_recovers_the_runs_it_knows(migrated_url: str) -> None:
    started = asyncio.Event()
    calls = {"first": 0, "second": 0}

    def define(block: bool) -> Workflow:
        flow = Workflow("recoverable")

        @flow.node
        async def first(ticket: str) -> str:
            calls["first"] += 1
            return ticket

        @flow.node
        async def second(first: str) -> str:
            calls["second"] += 1
            if block:
                started.set()
                await asyncio.sleep(60)
            return first * 2

        return flow

    async with Engine(migrated_url, workflows=[define(True)], workers=0) as engine:
        task = asyncio.create_task(engine.run(define(True), {"ticket": "ab"}))
        await started.wait()
        [run] = await engine.list_runs()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with Engine(migrated_url, workflows=[define(False)], poll_seconds=0.1) as engine:
        async with asyncio.timeout(30):
            recovered = await engine.wait(run.id)
    assert (recovered.status, recovered.output) == (RunStatus.SUCCEEDED, "abab")
    assert calls == {"first": 1, "second": 2}


async def test_a_loop_repeats_its_body_until_its_condition_fails(migrated_url: str) -> None:
    flow = Workflow("polling")
    polls: list[str] = []

    @flow.node
    async def prepare(job: str) -> str:
        return job

    @flow.node
    async def poll(prepare: str, ctx: NodeContext) -> int:
        polls.append(ctx.key)
        return len(polls)

    @flow.node(loop={"back_to": "poll", "while": "check < 3", "max_iterations": 10})
    async def check(poll: int) -> int:
        return poll

    @flow.node
    async def report(check: int) -> str:
        return f"ready after {check} polls"

    async with Engine(migrated_url) as engine:
        run = await engine.run(flow, {"job": "export"})
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, "ready after 3 polls")
        assert polls == ["", "i1", "i2"]
        executions = await engine.store.read_node_executions(run.id)
        assert sorted((e.node, e.key) for e in executions if e.node == "check") == [
            ("check", ""),
            ("check", "i1"),
            ("check", "i2"),
        ]
        checkpoint = await engine.store.read_checkpoint(run.id)
        assert checkpoint is not None and checkpoint.state == {"loops": {"check": 2}}


async def test_a_loop_stops_at_its_bound(migrated_url: str) -> None:
    flow = Workflow("bounded")

    @flow.node
    async def step(n: int) -> int:
        return n

    @flow.node(loop={"back_to": "step", "while": "True or again", "max_iterations": 4})
    async def again(step: int) -> int:
        return step

    async with Engine(migrated_url) as engine:
        run = await engine.run(flow, {"n": 1})
        assert run.status is RunStatus.SUCCEEDED
        keys = {e.key for e in await engine.store.read_node_executions(run.id)}
        assert keys == {"", "i1", "i2", "i3"}


async def test_cancel_reaches_a_running_node_and_ends_the_run(migrated_url: str) -> None:
    flow = Workflow("cancellable")
    started = asyncio.Event()
    interrupted = asyncio.Event()

    @flow.node
    async def long(job: str) -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            interrupted.set()
            raise
        return job

    @flow.node
    async def after(long: str) -> str:
        return long

    async with Engine(migrated_url, workers=0) as engine:
        task = asyncio.create_task(engine.run(flow, {"job": "x"}))
        await started.wait()
        [running] = await engine.list_runs()
        assert (await engine.cancel(running.id)).status is RunStatus.RUNNING
        async with asyncio.timeout(10):
            run = await task
        assert run.status is RunStatus.CANCELLED
        assert interrupted.is_set()
        nodes = {n.node: n.status for n in await engine.store.read_node_executions(run.id)}
        assert nodes == {"long": NodeStatus.CANCELLED}
        with pytest.raises(ExecutionError, match="has already ended"):
            await engine.resume(run.id)

        queued = await engine.submit(flow, {"job": "y"})
        assert (await engine.cancel(queued)).status is RunStatus.CANCELLED
        async with asyncio.timeout(5):
            assert (await engine.wait(queued)).status is RunStatus.CANCELLED


async def test_a_subworkflow_runs_as_a_child_run_and_resumes_once(migrated_url: str) -> None:
    calls = {"prepare": 0, "slow": 0}
    started = asyncio.Event()
    block = {"on": True}

    def child() -> Workflow:
        flow = Workflow("child")

        @flow.node
        async def prepare(ticket: str) -> str:
            calls["prepare"] += 1
            return ticket.upper()

        @flow.node
        async def slow(prepare: str) -> str:
            calls["slow"] += 1
            if block["on"]:
                started.set()
                await asyncio.sleep(60)
            return prepare + "!"

        return flow

    def parent() -> Workflow:
        flow = Workflow("parent")
        flow.subworkflow("delegate", child(), inputs=["ticket"])

        @flow.node
        async def wrap(delegate: str) -> str:
            return f"<{delegate}>"

        return flow

    async with Engine(migrated_url, workflows=[parent()], workers=0) as engine:
        task = asyncio.create_task(engine.run(parent(), {"ticket": "ab"}))
        await started.wait()
    # The engine closed inside the child run: parent and child were released.
    with pytest.raises(asyncio.CancelledError):
        await task
    block["on"] = False
    async with Engine(migrated_url, workflows=[parent()], workers=0) as engine:
        [parent_run] = await engine.list_runs(workflow="parent")
        resumed = await engine.resume(parent_run.id)
        assert (resumed.status, resumed.output) == (RunStatus.SUCCEEDED, "<AB!>")
        [child_run] = await engine.list_runs(workflow="child")
        assert child_run.parent_run_id == parent_run.id
        assert (child_run.status, child_run.output) == (RunStatus.SUCCEEDED, "AB!")
        assert calls == {"prepare": 1, "slow": 2}


async def test_a_failed_run_resumes_and_reruns_only_what_failed(migrated_url: str) -> None:
    calls = {"first": 0, "flaky": 0}
    broken = {"on": True}

    def define() -> Workflow:
        flow = Workflow("flaky")

        @flow.node
        async def first(ticket: str) -> str:
            calls["first"] += 1
            return ticket

        @flow.node
        async def flaky(first: str) -> str:
            calls["flaky"] += 1
            if broken["on"]:
                raise ConnectionError("upstream down")
            return first + " ok"

        return flow

    async with Engine(migrated_url, workflows=[define()], workers=0) as engine:
        failed = await engine.run(define(), {"ticket": "t"})
        assert failed.status is RunStatus.FAILED
        assert failed.error["message"] == "upstream down"
        broken["on"] = False
        resumed = await engine.resume(failed.id)
        assert (resumed.status, resumed.output, resumed.error) == (
            RunStatus.SUCCEEDED,
            "t ok",
            None,
        )
        assert calls == {"first": 1, "flaky": 2}


async def test_an_output_that_cannot_be_stored_fails_its_node_clearly(migrated_url: str) -> None:
    flow = Workflow("unstorable")

    class Handle:
        pass

    @flow.node
    async def opens(path: str) -> Any:
        return {"handle": Handle()}

    @flow.node
    async def fine(path: str) -> str:
        return path

    async with Engine(migrated_url) as engine:
        run = await engine.run(flow, {"path": "/tmp/x"})
        assert run.status is RunStatus.FAILED
        assert run.error["node"] == "opens"
        assert run.error["type"] == "flowstore.errors.UnserializableValue"
        assert "output of node 'opens' cannot be stored as JSON" in run.error["message"]
        assert "Handle at ['handle']" in run.error["message"]
        nodes = {n.node: n.status for n in await engine.store.read_node_executions(run.id)}
        assert nodes["opens"] is NodeStatus.FAILED


@pytest.mark.parametrize("durability", ["sync", "batched"])
async def test_a_run_taken_over_stops_and_writes_nothing_more(
    migrated_url: str, durability: Literal["sync", "batched"]
) -> None:
    flow = Workflow("taken", config=ExecutionConfig(durability=durability))
    seen: dict[str, Any] = {}

    @flow.node
    async def first(n: int) -> int:
        return n

    @flow.node
    async def steal(first: int, ctx: NodeContext) -> int:
        engine = seen["engine"]
        # A commit in flight holds the run's row; PostgreSQL's claim skips locked rows.
        for _ in range(1_000):
            claim = await engine.store.claim_run(
                WorkerId("thief"),
                lease_seconds=60,
                run_id=ctx.run_id,
                steal_from=[engine.worker_id],
            )
            if claim is not None:
                seen["seq"] = claim.run.last_seq
                return first
            await asyncio.sleep(0.005)
        raise AssertionError("the run could not be taken over")
        return first

    @flow.node
    async def later(steal: int) -> int:
        seen["later ran"] = True
        return steal

    @flow.node
    async def last(later: int) -> int:
        return later

    async with Engine(migrated_url, workers=0) as engine:
        seen["engine"] = engine
        with pytest.raises(LeaseLost):
            await engine.run(flow, {"n": 1}, run_id="taken-over")
        log = await engine.store.read_transitions(RunId("taken-over"))
        run = await engine.get_run("taken-over")
    assert log[-1].seq == seen["seq"], "the old owner wrote after losing its lease"
    assert run.status is RunStatus.RUNNING
    if durability == "sync":
        assert "later ran" not in seen
