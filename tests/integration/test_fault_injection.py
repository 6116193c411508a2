"""Fault injection: each commit of a 10-node workflow with a fan-out fails in turn (the store
unavailable, a raw driver error, a hang past the lease), and so does the heartbeat that
renews the lease. For every point, on SQLite and PostgreSQL: the run ends correctly after the
fault (by retry, by another worker, or by `resume`), no run stays `running` without a live
executor, nothing committed is lost, and no node whose success was committed runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from flowstore import NodeContext, Workflow
from flowstore.errors import LeaseLost, RunNotFound, StoreUnavailable
from flowstore.runtime.engine import Engine
from flowstore.store import NodeStatus, RunId, RunStatus, TransitionKind
from tests.support.faults import Fault

LEASE = 0.6
NODES = ["start", "w1", "w2", "w3", "w4", "w5", "w6", "join", "check", "report"]
OUTPUT = {"total": 211, "checked": True}


def fan_out(calls: Counter[str]) -> Workflow:
    """start -> w1..w6 -> join -> check -> report: ten nodes, six of them at once."""
    flow = Workflow("faults", output="report")

    @flow.node
    async def start(n: int) -> int:
        calls["start"] += 1
        return n

    def worker(index: int) -> None:
        async def work(start: int) -> int:
            calls[f"w{index}"] += 1
            await asyncio.sleep(0.02 * index)  # the ends come one by one
            return start * index

        work.__qualname__ = f"fan_out.w{index}"  # one import path per function
        flow.node(name=f"w{index}")(work)

    for index in range(1, 7):
        worker(index)

    @flow.node
    async def join(w1: int, w2: int, w3: int, w4: int, w5: int, w6: int) -> int:
        calls["join"] += 1
        return (w1 + w2 + w3 + w4 + w5 + w6) * 10

    @flow.node
    async def check(join: int) -> bool:
        calls["check"] += 1
        return join > 0

    @flow.node
    async def report(join: int, check: bool) -> dict[str, Any]:
        calls["report"] += 1
        return {"total": join + 1, "checked": check}

    return flow


async def _commits_of_a_clean_run(url: str) -> int:
    calls: Counter[str] = Counter()
    async with Engine(url, workflows=[fan_out(calls)], workers=0) as engine:
        counter = Fault(engine.store, "record_transitions", lambda _: False)
        run = await engine.run(fan_out(calls), {"n": 1}, run_id="clean")
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, OUTPUT)
    return counter.count


class Probe:
    """What a run committed when its fault struck, and how often each node ran."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.committed: set[str] = set()
        self.struck = False

    def at_fault(self, engine: Engine, run_id: str) -> Callable[[], Awaitable[None]]:
        async def look() -> None:
            self.struck = True
            executions = await engine.store.read_node_executions(RunId(run_id))
            self.committed = {e.node for e in executions if e.status is NodeStatus.SUCCEEDED}

        return look


async def _check(url: str, run_id: str, probe: Probe) -> None:
    """The run ended well, exactly once per node, and nothing committed ran again."""
    async with Engine(url, workers=0) as reader:
        run = await reader.get_run(run_id)
        log = await reader.store.read_transitions(RunId(run_id))
        stuck = await reader.list_runs(status=RunStatus.RUNNING)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, OUTPUT), run.error
    succeeded = Counter(
        t.node for t in log if t.kind is TransitionKind.NODE and t.status == "succeeded"
    )
    assert succeeded == Counter(NODES)
    for node in probe.committed:  # committed before the fault: never ran again
        assert probe.calls[node] == 1, (node, probe.calls)
    assert set(probe.calls) == set(NODES)
    assert max(probe.calls.values()) <= 2, probe.calls  # at most the one in flight, again
    assert stuck == []


async def _every_commit(url: str, fault_at: Callable[[int, str], Awaitable[Probe]]) -> None:
    """Fault each commit of the workflow in turn (`fault_at(at, run_id)` runs it with commit
    number `at` faulted) and check the run. When a run made fewer commits than a clean one
    (two ends shared a commit this time) and never reached its fault, it is run again."""
    commits = await _commits_of_a_clean_run(url)
    assert commits >= 6
    for at in range(1, commits + 1):
        for again in range(5):
            run_id = f"at-{at}-{again}"
            probe = await fault_at(at, run_id)
            await _check(url, run_id, probe)
            if probe.struck:
                break
        else:
            raise AssertionError(f"commit {at} of {commits} was never reached in 5 runs")


async def test_every_commit_unavailable_in_turn_is_taken_up_again(migrated_url: str) -> None:
    async def fault_at(at: int, run_id: str) -> Probe:
        probe = Probe()
        async with Engine(migrated_url, workflows=[fan_out(probe.calls)], workers=0) as engine:
            Fault(
                engine.store,
                "record_transitions",
                {at},
                StoreUnavailable("recording transitions: database is locked"),
                before=probe.at_fault(engine, run_id),
            )
            run = await engine.run(fan_out(probe.calls), {"n": 1}, run_id=run_id)
            assert run.status is RunStatus.SUCCEEDED
        return probe

    await _every_commit(migrated_url, fault_at)


async def test_every_commit_failing_with_a_driver_error_in_turn_is_resumed(
    migrated_url: str,
) -> None:
    async def fault_at(at: int, run_id: str) -> Probe:
        probe = Probe()
        async with Engine(migrated_url, workflows=[fan_out(probe.calls)], workers=0) as engine:
            fault = Fault(
                engine.store,
                "record_transitions",
                {at},
                ConnectionResetError("connection reset by peer"),
                before=probe.at_fault(engine, run_id),
            )
            try:
                await engine.run(fan_out(probe.calls), {"n": 1}, run_id=run_id)
            except ConnectionResetError:
                pass
            else:
                assert not probe.struck
                return probe
            fault.undo()
            try:
                record = await engine.store.get_run(RunId(run_id))
            except RunNotFound:  # its first commit failed: nothing was stored, run it again
                assert at == 1
                await engine.run(fan_out(probe.calls), {"n": 1}, run_id=run_id)
            else:  # ended `failed` by its owner, not left `running`; resumed from there
                assert (record.status, record.lease_owner) == (RunStatus.FAILED, None)
                await engine.resume(run_id)
        return probe

    await _every_commit(migrated_url, fault_at)


async def test_every_commit_hanging_past_the_lease_in_turn_is_taken_over(
    migrated_url: str,
) -> None:
    async def fault_at(at: int, run_id: str) -> Probe:
        probe = Probe()
        stalled = {"on": False}
        flow = fan_out(probe.calls)
        async with (
            Engine(migrated_url, workflows=[flow], workers=1, poll_seconds=0.05) as rescuer,
            Engine(migrated_url, workflows=[flow], workers=0, lease_seconds=LEASE) as engine,
        ):
            look = probe.at_fault(engine, run_id)

            async def stall() -> None:
                stalled["on"] = True  # the whole process stalls: its heartbeat too
                await look()

            Fault(engine.store, "record_transitions", {at}, hang=4 * LEASE, before=stall)
            Fault(
                engine.store,
                "heartbeat",
                lambda _: stalled["on"],
                StoreUnavailable("recording a heartbeat: database is locked"),
            )
            with contextlib.suppress(LeaseLost):  # taken over while it stalled
                await engine.run(flow, {"n": 1}, run_id=run_id)
            async with asyncio.timeout(30):
                await rescuer.wait(run_id)
        return probe

    await _every_commit(migrated_url, fault_at)


def slow_chain(calls: Counter[str]) -> Workflow:
    flow = Workflow("slow-chain")

    @flow.node
    async def first(n: int) -> int:
        calls["first"] += 1
        return n

    @flow.node
    async def slow(first: int) -> int:
        calls["slow"] += 1
        await asyncio.sleep(3 * LEASE)
        return first + 1

    @flow.node
    async def last(slow: int) -> int:
        calls["last"] += 1
        return slow * 10

    return flow


@pytest.mark.parametrize(
    "failure",
    [
        StoreUnavailable("recording a heartbeat: database is locked"),
        ConnectionResetError("connection reset by peer"),
        None,  # the heartbeat hangs
    ],
    ids=["unavailable", "driver-error", "hang"],
)
async def test_a_heartbeat_failing_past_the_lease_hands_the_run_over(
    migrated_url: str, failure: BaseException | None
) -> None:
    calls: Counter[str] = Counter()
    flow = slow_chain(calls)
    async with (
        Engine(migrated_url, workflows=[flow], workers=1, poll_seconds=0.05) as rescuer,
        Engine(migrated_url, workflows=[flow], workers=0, lease_seconds=LEASE) as engine,
    ):
        Fault(engine.store, "heartbeat", lambda _: True, failure, hang=0 if failure else 60)
        # Stops itself once its lease runs out, writing nothing more; another worker goes on.
        with pytest.raises(LeaseLost):
            async with asyncio.timeout(30):
                await engine.run(flow, {"n": 1}, run_id="beat")
        async with asyncio.timeout(30):
            run = await rescuer.wait("beat")
        log = await rescuer.store.read_transitions(RunId("beat"))
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, 20)
    # `first` was committed: never again; `slow` was in flight: once more; `last` once.
    assert calls == {"first": 1, "slow": 2, "last": 1}
    owners = [t.payload["owner"] for t in log if t.kind is TransitionKind.RUN and t.payload]
    assert owners == [engine.worker_id, rescuer.worker_id]


def waiting_chain(calls: Counter[str]) -> Workflow:
    """start -> nap (a sleep) -> gate (a signal) -> finish: each wait a commit of its own."""
    flow = Workflow("waits-under-faults", output="finish")

    @flow.node
    async def start(n: int) -> int:
        calls["start"] += 1
        return n

    @flow.node
    async def nap(start: int, ctx: NodeContext) -> int:
        await ctx.sleep(0.05)
        calls["nap"] += 1  # once the sleep is over
        return start + 1

    @flow.node
    async def gate(nap: int, ctx: NodeContext) -> int:
        go: int = await ctx.wait_for_signal("go")
        calls["gate"] += 1  # once the signal is taken
        return nap * go

    @flow.node
    async def finish(gate: int) -> int:
        calls["finish"] += 1
        return gate + 1

    return flow


async def _check_waits(url: str, run_id: str, calls: Counter[str]) -> None:
    """The run ended with its one signal taken once, each wait ended once, and no node ran
    past its wait more than once plus the one a fault cut short."""
    async with Engine(url, workers=0) as reader:
        run = await reader.get_run(run_id)
        [signal] = await reader.store.list_signals(RunId(run_id))
        waits = await reader.store.read_waits(RunId(run_id))
        stuck = await reader.list_runs(status=RunStatus.RUNNING)
        waiting = await reader.list_runs(status=RunStatus.WAITING)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, 16), run.error
    assert signal.consumed_at is not None
    assert [(w.node, w.kind, w.outcome) for w in waits] == [
        ("nap", "sleep", "woke"),
        ("gate", "signal", "signalled"),
    ]
    assert waits[1].signal_id == signal.id
    assert set(calls) == {"start", "nap", "gate", "finish"}
    assert max(calls.values()) <= 2, calls
    assert (stuck, waiting) == ([], [])


@contextlib.asynccontextmanager
async def _signalled_when_it_waits(engine: Engine, run_id: str) -> AsyncIterator[None]:
    """Send the run its signal once it is stored waiting for it, while the block runs."""

    async def send() -> None:
        while True:
            waits = await engine.store.read_waits(RunId(run_id))
            if any(w.kind == "signal" and w.ended_at is None for w in waits):
                await engine.signal(run_id, "go", 5)
                return
            await asyncio.sleep(0.01)

    sender = asyncio.create_task(send())
    try:
        yield
        await asyncio.wait_for(sender, 1)  # sent before the run could end
    finally:
        sender.cancel()


async def test_every_commit_of_a_run_that_waits_failing_in_turn_loses_nothing(
    migrated_url: str,
) -> None:
    """Each commit fails in turn: those that put the run to waiting (a sleep, then a signal
    sent only once the run waits for it), end a wait, take the signal (unavailable: taken
    up again; a driver error: ends the run failed, then resumed). The signal is taken once,
    and each wait ends once."""
    clean: Counter[str] = Counter()
    async with Engine(migrated_url, workers=0, poll_seconds=0.02) as engine:
        counter = Fault(engine.store, "record_transitions", lambda _: False)
        run_id = await engine.submit(waiting_chain(clean), {"n": 2}, run_id="clean")
        async with _signalled_when_it_waits(engine, run_id):
            await engine.resume(run_id)
    await _check_waits(migrated_url, "clean", clean)
    commits = counter.count
    assert commits >= 6
    failures: list[BaseException] = [
        StoreUnavailable("recording transitions: database is locked"),
        ConnectionResetError("connection reset by peer"),
    ]
    for failure in failures:
        for at in range(1, commits + 1):
            calls: Counter[str] = Counter()
            flow = waiting_chain(calls)
            run_id = f"{type(failure).__name__}-{at}"
            async with Engine(
                migrated_url, workflows=[flow], workers=0, poll_seconds=0.02
            ) as engine:
                await engine.submit(flow, {"n": 2}, run_id=run_id)
                fault = Fault(engine.store, "record_transitions", {at}, failure)
                async with _signalled_when_it_waits(engine, run_id):
                    try:
                        await asyncio.wait_for(engine.resume(run_id), 30)
                    except ConnectionResetError:
                        fault.undo()
                        record = await engine.store.get_run(RunId(run_id))
                        assert (record.status, record.lease_owner) == (RunStatus.FAILED, None)
                        await asyncio.wait_for(engine.resume(run_id), 30)
                assert fault.failed == 1, f"commit {at} of {commits} was never made"
            await _check_waits(migrated_url, run_id, calls)
