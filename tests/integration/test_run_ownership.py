"""Every run ends or is released, whatever stops its executor: regressions of runs that sat in
`running` while their owner lived, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import pytest

from flowstore import Workflow
from flowstore.errors import StoreError, StoreUnavailable
from flowstore.events import RunEvent
from flowstore.runtime.engine import Engine
from flowstore.store import NodeChange, NodeStatus, RunId, RunStatus, WorkerId
from tests.support.faults import Fault

LOCKED = StoreUnavailable("recording transitions: database is locked")


def chain(calls: dict[str, int] | None = None) -> Workflow:
    flow = Workflow("chain")
    counted = calls if calls is not None else {}

    @flow.node
    async def a(n: int) -> int:
        counted["a"] = counted.get("a", 0) + 1
        return n + 1

    @flow.node
    async def b(a: int) -> int:
        counted["b"] = counted.get("b", 0) + 1
        return a + 1

    return flow


async def test_a_commit_failing_once_is_taken_up_again_and_the_run_ends(
    migrated_url: str,
) -> None:
    calls: dict[str, int] = {}
    async with Engine(migrated_url, workflows=[chain(calls)], workers=0) as engine:
        # The second commit holds `a`'s end and `b`'s start.
        fault = Fault(engine.store, "record_transitions", {2}, LOCKED)
        run = await engine.run(chain(calls), {"n": 1}, run_id="r1")
        fault.undo()
        assert (run.status, run.output, fault.failed) == (RunStatus.SUCCEEDED, 3, 1)
        # `a` was running when the commit failed: it ran again (at least once); `b` once.
        assert calls == {"a": 2, "b": 1}
        record = await engine.store.get_run(RunId("r1"))
        assert record.lease_owner is None


async def test_a_run_whose_store_stays_away_is_released_for_any_worker(
    migrated_url: str,
) -> None:
    async with Engine(
        migrated_url, workflows=[chain()], workers=0, lease_seconds=30, store_retry_seconds=0
    ) as engine:
        fault = Fault(engine.store, "record_transitions", {2}, LOCKED)
        with pytest.raises(StoreUnavailable, match="database is locked"):
            await engine.run(chain(), {"n": 1}, run_id="r1")
        fault.undo()
        # Not kept `running` by this live engine: free at once, long before its lease ends.
        record = await engine.store.get_run(RunId("r1"))
        assert (record.status, record.lease_owner) == (RunStatus.RUNNING, None)
        async with asyncio.timeout(10):
            resumed = await engine.resume("r1")  # does not wait on itself
        assert (resumed.status, resumed.output) == (RunStatus.SUCCEEDED, 3)


async def test_a_run_whose_release_fails_too_is_free_once_its_lease_expires(
    migrated_url: str,
) -> None:
    async with Engine(
        migrated_url, workflows=[chain()], workers=0, lease_seconds=0.6, store_retry_seconds=0
    ) as engine:
        record_fault = Fault(engine.store, "record_transitions", {2}, LOCKED)
        release_fault = Fault(engine.store, "release_lease", lambda _: True, LOCKED)
        with pytest.raises(StoreUnavailable):
            await engine.run(chain(), {"n": 1}, run_id="r1")
        record_fault.undo()
        release_fault.undo()
        await asyncio.sleep(1.5)  # the heartbeat (every 0.2 s) no longer renews it
        async with Engine(migrated_url, workflows=[chain()], workers=0) as other:
            async with asyncio.timeout(10):
                resumed = await other.resume("r1")
        assert resumed.status is RunStatus.SUCCEEDED


async def test_a_bug_outside_the_nodes_ends_the_run_failed(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[chain()], workers=0) as engine:
        fault = Fault(engine.store, "record_transitions", {2}, RuntimeError("a bug"))
        with pytest.raises(RuntimeError, match="a bug"):
            await engine.run(chain(), {"n": 1}, run_id="r1")
        fault.undo()
        record = await engine.store.get_run(RunId("r1"))
        assert (record.status, record.lease_owner) == (RunStatus.FAILED, None)
        assert record.error["type"] == "builtins.RuntimeError"
        nodes = {n.node: n.status for n in await engine.store.read_node_executions(record.id)}
        assert nodes == {"a": NodeStatus.CANCELLED}
        resumed = await engine.resume("r1")
        assert (resumed.status, resumed.output) == (RunStatus.SUCCEEDED, 3)


async def test_a_cancelled_caller_ends_its_run_cancelled(migrated_url: str) -> None:
    started = asyncio.Event()
    flow = Workflow("slow")

    @flow.node
    async def wait(n: int) -> int:
        started.set()
        await asyncio.sleep(60)
        return n

    async with Engine(migrated_url, workflows=[flow]) as engine:
        task = asyncio.create_task(engine.run(flow, {"n": 1}, run_id="r1"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        record = await engine.store.get_run(RunId("r1"))
        assert (record.status, record.lease_owner) == (RunStatus.CANCELLED, None)
        [execution] = await engine.store.read_node_executions(record.id)
        assert execution.status is NodeStatus.CANCELLED


async def test_leaving_a_stream_early_cancels_the_run_durably(migrated_url: str) -> None:
    ran = {"b": 0}
    flow = Workflow("streamed")

    @flow.node
    async def a(n: int) -> int:
        await asyncio.sleep(0.2)
        return n

    @flow.node
    async def b(a: int) -> int:
        ran["b"] += 1
        return a

    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        events = engine.stream(flow, {"n": 1})
        first = await anext(events)
        await events.aclose()
        record = await engine.store.get_run(RunId(first.run_id))
        assert (record.status, record.lease_owner) == (RunStatus.CANCELLED, None)
    # Another worker, later, does not run the "cancelled" run to its end.
    async with Engine(migrated_url, workflows=[flow], poll_seconds=0.05) as engine:
        await asyncio.sleep(0.5)
        assert (await engine.get_run(first.run_id)).status is RunStatus.CANCELLED
    assert ran == {"b": 0}


async def test_a_reader_never_sees_an_end_that_was_not_committed(migrated_url: str) -> None:
    gate = asyncio.Event()
    flow = Workflow("gated")

    @flow.node
    async def a(n: int) -> int:
        started.set()
        await gate.wait()
        return n + 1

    @flow.node
    async def b(a: int) -> int:
        return a + 1

    started = asyncio.Event()
    async with Engine(migrated_url, workflows=[flow], workers=0, store_retry_seconds=0) as engine:
        # The third commit holds `b`'s end and the run's success.
        fault = Fault(engine.store, "record_transitions", {3}, LOCKED)
        running = asyncio.create_task(engine.run(flow, {"n": 1}, run_id="r1"))
        await started.wait()  # the run is stored
        seen: list[tuple[str, str]] = []

        async def read() -> None:
            async for event in engine.events("r1"):
                if isinstance(event, RunEvent):
                    seen.append((event.status, repr(event.output)))

        reader = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        gate.set()
        with pytest.raises(StoreUnavailable):
            await running
        fault.undo()
        await asyncio.sleep(0.1)
        assert ("succeeded", "3") not in seen
        assert (await engine.get_run("r1")).status is RunStatus.RUNNING
        resumed = await engine.resume("r1")
        async with asyncio.timeout(10):
            await reader
    assert resumed.status is RunStatus.SUCCEEDED
    assert seen.count(("succeeded", "3")) == 1


async def test_the_heartbeat_outlives_any_store_error(
    migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Errors the heartbeat meets (not only `StoreUnavailable`) are logged once, retried, and
    a healthy run keeps its lease throughout."""
    flow = Workflow("long")

    @flow.node
    async def step(n: int) -> int:
        await asyncio.sleep(3.0)
        return n

    caplog.set_level(logging.WARNING, logger="flowstore")
    # A beat every 0.8 s: beats fail until one has, and the next renews the lease with over
    # half a second to spare (a slow commit on a shared machine must not end it).
    async with Engine(migrated_url, workflows=[flow], workers=0, lease_seconds=2.4) as engine:
        failing = {"on": True}
        one_failed = asyncio.Event()

        def fails(_: int) -> bool:
            one_failed.set()
            return failing["on"]

        fault = Fault(
            engine.store, "heartbeat", fails, StoreError("the database system is starting up")
        )
        task = asyncio.create_task(engine.run(flow, {"n": 7}, run_id="r1"))
        async with asyncio.timeout(2.0):  # fewer than a lease of failed beats
            await one_failed.wait()
        failing["on"] = False
        run = await task
        fault.undo()
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, 7)
    heartbeat_lines = [r.getMessage() for r in caplog.records if "heartbeat" in r.getMessage()]
    assert len(heartbeat_lines) == 2, heartbeat_lines  # failed (once), and back
    assert "gave up" not in caplog.text


async def test_a_run_whose_lease_cannot_be_renewed_stops_writing(migrated_url: str) -> None:
    started = asyncio.Event()
    flow = Workflow("stranded")

    @flow.node
    async def step(n: int) -> int:
        started.set()
        await asyncio.sleep(30)
        return n

    async with Engine(migrated_url, workflows=[flow], workers=0, lease_seconds=0.6) as engine:
        Fault(engine.store, "heartbeat", lambda _: True, LOCKED)
        task = asyncio.create_task(engine.run(flow, {"n": 1}, run_id="r1"))
        await started.wait()
        with pytest.raises(Exception, match="lease"):
            async with asyncio.timeout(5):
                await task
        record = await engine.store.get_run(RunId("r1"))
        assert record.status is RunStatus.RUNNING  # for another worker to take over
    async with Engine(migrated_url, workers=0) as other:
        log = await other.store.read_transitions(RunId("r1"))
    assert [t.status for t in log if t.node == "step"] == ["running"]


async def test_a_waiter_keeps_no_future_per_poll(migrated_url: str) -> None:
    flow = chain()
    async with Engine(migrated_url, workflows=[flow], workers=0, poll_seconds=0.02) as client:
        run_id = await client.submit(flow, {"n": 1})
        waiting = asyncio.create_task(client.wait(run_id))
        await asyncio.sleep(0.3)
        assert sum(len(futures) for futures in client._waiting._futures.values()) <= 1
        async with Engine(migrated_url, workflows=[flow]) as worker:
            async with asyncio.timeout(10):
                run = await waiting
            assert run.status is RunStatus.SUCCEEDED
        assert client._waiting._futures == {}
        with contextlib.suppress(Exception):
            await worker.wait(run_id)


async def test_a_subworkflow_runs_under_a_caller_chosen_run_id(migrated_url: str) -> None:
    child = Workflow("child")

    @child.node
    async def double(n: int) -> int:
        return n * 2

    parent = Workflow("parent")
    parent.subworkflow("twice", child, inputs=["n"])

    async with Engine(migrated_url, workflows=[parent], workers=0) as engine:
        run = await engine.run(parent, {"n": 21}, run_id="order-42")
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, 42)
        [child_run] = await engine.list_runs(workflow="child")
        assert child_run.parent_run_id == "order-42"


async def test_a_timed_out_sync_generator_writes_nothing_after_its_end(migrated_url: str) -> None:
    import time

    flow = Workflow("talker")

    @flow.node(timeout=0.2)
    def talk(n: int):  # type: ignore[no-untyped-def]
        for index in range(8):
            time.sleep(0.1)
            yield f"t{index} "

    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        run = await engine.run(flow, {"n": 1})
        assert run.status is RunStatus.FAILED
        await asyncio.sleep(1.0)  # the thread yields its other tokens meanwhile
        log = await engine.store.read_transitions(run.id)
    assert log[-1].kind.value == "run" and log[-1].status == "failed"
    tokens = [t.payload for t in log if t.name == "token"]
    assert len(tokens) <= 2


async def test_only_workers_in_this_pid_namespace_are_taken_for_dead(migrated_url: str) -> None:
    import socket
    from datetime import UTC, datetime

    from flowstore.runtime.worker import dead_local_workers, process_identity
    from flowstore.store import WorkerId, WorkerInfo, open_store

    dead_pid = 2**22 + 17  # above Linux's highest PID: no such process here
    here = process_identity()
    elsewhere = {**here, "pid_ns": "pid:[1]"}
    now = datetime.now(UTC)
    store = await open_store(migrated_url)
    try:
        for name, metadata in [("here", here), ("container", elsewhere), ("old", None)]:
            worker = WorkerInfo(WorkerId(name), socket.gethostname(), dead_pid, now, now, metadata)
            await store.register_worker(worker)
        assert await dead_local_workers(store, WorkerId("me")) == ["here"]
    finally:
        await store.close()


def versioned(version: str) -> Workflow:
    flow = Workflow("pricing", version=version)

    @flow.node
    async def price(n: int) -> str:
        return f"v{version}:{n}"

    return flow


async def test_old_runs_finish_on_their_version_and_never_block_new_ones(
    migrated_url: str,
) -> None:
    v1, v2 = versioned("1"), versioned("2")
    async with Engine(migrated_url, workers=0) as client:
        old = [await client.submit(v1, {"n": n}) for n in range(3)]
    # A worker with only v2: takes the new runs, never the v1 ones, and is not held up.
    async with Engine(migrated_url, workflows=[versioned("2")], poll_seconds=0.05) as only_v2:
        new = [await only_v2.submit(v2, {"n": n}) for n in range(3)]
        async with asyncio.timeout(30):
            done = [await only_v2.wait(run_id) for run_id in new]
        assert [run.output for run in done] == ["v2:0", "v2:1", "v2:2"]
        waiting = [await only_v2.get_run(run_id) for run_id in old]
        assert {run.status for run in waiting} == {RunStatus.QUEUED}
    # A worker with both versions finishes the v1 runs on v1, and new runs on v2.
    both = [versioned("1"), versioned("2")]
    async with Engine(migrated_url, workflows=both, poll_seconds=0.05) as engine:
        newer = await engine.submit(versioned("2"), {"n": 9})
        async with asyncio.timeout(30):
            finished = [await engine.wait(run_id) for run_id in [*old, newer]]
    assert [run.output for run in finished] == ["v1:0", "v1:1", "v1:2", "v2:9"]


async def test_a_parent_cancelled_by_its_caller_cancels_its_child_run(migrated_url: str) -> None:
    started = asyncio.Event()
    child = Workflow("slow_child")

    @child.node
    async def wait(n: int) -> int:
        started.set()
        await asyncio.sleep(60)
        return n

    parent = Workflow("waiting-parent")
    parent.subworkflow("delegate", child, inputs=["n"])

    async with Engine(migrated_url, workflows=[parent], workers=0) as engine:
        task = asyncio.create_task(engine.run(parent, {"n": 1}, run_id="parent-1"))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        [child_run] = await engine.list_runs(workflow="slow_child")
        parent_run = await engine.get_run("parent-1")
        records = [await engine.store.get_run(run.id) for run in (child_run, parent_run)]
    assert [(r.status, r.lease_owner) for r in records] == [(RunStatus.CANCELLED, None)] * 2


async def test_a_node_cancelled_while_it_commits_never_stops_the_run_from_ending(
    migrated_url: str,
) -> None:
    """A node stopped (here, by a timeout) while its retry record is being committed leaves
    the committer sound: the run still records how it ended."""
    from flowstore import Retry

    flow = Workflow("cancelled-commit")

    @flow.node(retry=Retry(attempts=3, backoff=0.0), timeout=5)
    async def flaky(n: int) -> int:
        raise RuntimeError("try again")

    in_commit = asyncio.Event()
    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        real = engine.store.record_transitions

        async def slow(run_id: Any, fencing: int, changes: Any, **kwargs: Any) -> Any:
            if any(getattr(change, "outcome", None) == "retried" for change in changes):
                in_commit.set()  # the node's retry record: the node waits for this commit
                await asyncio.sleep(0.3)
            return await real(run_id, fencing, changes, **kwargs)

        engine.store.record_transitions = slow
        task = asyncio.create_task(engine.run(flow, {"n": 1}, run_id="c1"))
        await in_commit.wait()
        held = engine._held.get(RunId("c1"))
        assert held is not None
        held.cancelled.set()  # the node is cancelled mid-commit; the run must still end
        async with asyncio.timeout(10):
            run = await task
        engine.store.record_transitions = real
    assert run.status is RunStatus.CANCELLED


async def test_runs_held_while_their_first_commit_is_in_flight_keep_their_lease(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A heartbeat that lands between a new run's hold and its first commit (which creates
    it) does not take it for lost: with a heartbeat every 0.5 s and every first commit held
    back 0.6 s, each run is named by a heartbeat before its row exists."""
    flow = Workflow("fresh")

    @flow.node
    async def one(n: int) -> int:
        return n

    async with Engine(migrated_url, workers=0, lease_seconds=1.5) as engine:
        real = engine.store.record_transitions

        async def late(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("create") is not None:
                await asyncio.sleep(0.6)
            return await real(*args, **kwargs)

        monkeypatch.setattr(engine.store, "record_transitions", late)
        runs = await asyncio.gather(*(engine.run(flow, {"n": n}) for n in range(20)))
    assert [run.output for run in runs] == list(range(20))


async def test_a_first_claim_reads_nothing_back_and_a_later_one_restores_what_was_done(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, int] = {}
    flow = chain(calls)
    reads: list[str] = []
    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        store = engine.store

        def spying(name: str) -> Any:
            read = getattr(store, name)

            def spy(*args: Any) -> Any:
                reads.append(name)
                return read(*args)

            return spy

        for name in ("read_checkpoint", "read_node_executions", "read_waits"):
            monkeypatch.setattr(store, name, spying(name))
        # Its first claim: nothing was done before, so nothing is read back.
        fresh = await engine.submit(flow, {"n": 1})
        run = await engine.resume(fresh)
        assert (run.status, run.output, calls, reads) == (
            RunStatus.SUCCEEDED,
            3,
            {"a": 1, "b": 1},
            [],
        )
        # Another worker claimed this one, did `a` and let it go: the next claim reads that
        # back, and `a` does not run again.
        calls.clear()
        taken = await engine.submit(flow, {"n": 1})
        other = WorkerId("other")
        claim = await store.claim_run(other, lease_seconds=30, run_id=RunId(taken))
        assert claim is not None and not claim.resumes
        done = store.encode(2, what="a's output")
        await store.record_transitions(
            claim.run.id,
            claim.fencing,
            [
                NodeChange("a", NodeStatus.RUNNING, attempt=1, input={"n": 1}),
                NodeChange("a", NodeStatus.SUCCEEDED, output=done),
            ],
        )
        assert await store.release_lease(claim.run.id, other, claim.fencing)
        run = await engine.resume(taken)
        assert (run.status, run.output, calls) == (RunStatus.SUCCEEDED, 3, {"b": 1})
        assert "read_node_executions" in reads
