"""Fork and replay: a new run from a node re-executes that node and what follows only, keeps
the rest of the source run, and leaves the source as it was; a run as it was at any point of
its log; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
from collections import Counter

import pytest

from flowstore import Client, Engine, ExecutionError, InvalidValue, Loop, RunStatus, Workflow
from flowstore.events import NodeEvent, RunEvent
from flowstore.store import TransitionKind
from tests.support.cli import run_flowstore

calls: Counter[str] = Counter()
broken = {"draft": True}

flow = Workflow("pipeline", output="publish")


@flow.node
async def fetch(doc: str) -> str:
    calls["fetch"] += 1
    return doc.upper()


@flow.node
async def summary(fetch: str) -> int:
    calls["summary"] += 1
    return len(fetch)


@flow.node
async def draft(fetch: str, tone: str) -> str:
    calls["draft"] += 1
    if broken["draft"]:
        raise ValueError("the draft prompt is wrong")
    return f"{tone}: {fetch}"


@flow.node(when="summary > 100")
async def shorten(summary: int) -> str:
    calls["shorten"] += 1
    return "short"


@flow.node
async def publish(draft: str, summary: int) -> str:
    calls["publish"] += 1
    return f"{draft} ({summary} chars)"


@pytest.fixture(autouse=True)
def fresh() -> None:
    calls.clear()
    broken["draft"] = True


async def test_a_fork_reexecutes_the_node_and_what_follows_only(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        failed = await engine.run(flow, {"doc": "hello", "tone": "casual"})
        assert failed.status is RunStatus.FAILED
        before = dict(calls)
        broken["draft"] = False  # the bug is fixed
        forked = await engine.fork(failed.id, "draft", inputs={"tone": "formal"})
        source = await engine.get_run(failed.id)
        executions = {e.node: e for e in await engine.store.read_node_executions(forked.id)}
    assert (forked.status, forked.output) == (RunStatus.SUCCEEDED, "formal: HELLO (5 chars)")
    assert forked.inputs == {"doc": "hello", "tone": "formal"}
    # fetch and summary ran once, in the source run; shorten stayed skipped.
    assert before == {"fetch": 1, "summary": 1, "draft": 1}
    assert calls - Counter(before) == Counter({"draft": 1, "publish": 1})
    assert executions["shorten"].status.value == "skipped"
    assert executions["fetch"].output == "HELLO"
    assert source.status is RunStatus.FAILED and source.inputs["tone"] == "casual"


async def test_forking_the_first_node_reruns_everything(migrated_url: str) -> None:
    broken["draft"] = False
    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        done = await engine.run(flow, {"doc": "hi", "tone": "t"})
        calls.clear()
        again = await engine.fork(done.id, "fetch", inputs={"doc": "bye"})
    assert again.output == "t: BYE (3 chars)"
    assert calls == Counter({"fetch": 1, "summary": 1, "draft": 1, "publish": 1})


async def test_a_loop_upstream_keeps_its_iterations_and_a_body_node_is_refused(
    migrated_url: str,
) -> None:
    looping = Workflow("looping", output="report")
    count: Counter[str] = Counter()

    @looping.node
    async def start() -> int:
        count["start"] += 1
        return 0

    @looping.node
    async def step(start: int) -> int:
        count["step"] += 1
        return count["step"]

    @looping.node(loop=Loop(back_to="step", while_="check < 3", max_iterations=10))
    async def check(step: int) -> int:
        count["check"] += 1
        return step

    @looping.node
    async def report(check: int) -> str:
        count["report"] += 1
        return f"stepped to {check}"

    async with Engine(migrated_url, workflows=[looping], workers=0) as engine:
        first = await engine.run(looping, {})
        assert first.output == "stepped to 3"
        forked = await engine.fork(first.id, "report")
        with pytest.raises(ExecutionError, match="'check' is inside the body of loop 'check'"):
            await engine.fork(first.id, "check")
        with pytest.raises(ExecutionError, match="no node 'nowhere'"):
            await engine.fork(first.id, "nowhere")
        with pytest.raises(ExecutionError, match=r"version '9' of workflow 'looping' is not"):
            await engine.fork(first.id, "report", version="9")
        # A client, with the stored definition only, finds the loop's body the same way.
        async with Client(migrated_url) as client:
            with pytest.raises(ExecutionError, match="'check' is inside the body of loop"):
                await client.fork(first.id, "check")
            await client.fork(first.id, "step")  # the node the loop goes back to: allowed
    assert forked.output == "stepped to 3"
    assert count == Counter({"start": 1, "step": 3, "check": 3, "report": 2})


async def test_the_state_at_each_point_matches_the_events_of_the_log(migrated_url: str) -> None:
    broken["draft"] = False
    async with Engine(migrated_url, workflows=[flow], workers=0) as engine:
        run = await engine.run(flow, {"doc": "abc", "tone": "dry"})
        events = [event async for event in engine.events(run.id, follow=False)]
        last = (await engine.store.get_run(run.id)).last_seq
        for seq in range(1, last + 1):
            at = await engine.state_at(run.id, seq)
            status, nodes = "queued", {}
            for event in events:
                if event.seq > seq:
                    break
                if isinstance(event, RunEvent):
                    status = event.status
                if isinstance(event, NodeEvent):
                    nodes[(event.node, event.key)] = (event.status, event.output)
            shown = {(n.node, n.key): (n.status.value, n.output) for n in at.nodes}
            assert (at.status.value, shown) == (status, nodes), f"at {seq}"
        with pytest.raises(InvalidValue, match=f"sequence numbers 1 to {last}"):
            await engine.state_at(run.id, last + 1)
    assert at.status is RunStatus.SUCCEEDED and at.outputs()["publish"] == "dry: ABC (3 chars)"


def test_the_command_line_forks_and_shows_a_run_at_a_point(migrated_url: str) -> None:
    env = {**os.environ, "FLOWSTORE_DATABASE_URL": migrated_url}
    source = "tests.integration.test_fork:flow"
    failed = run_flowstore(
        "run", source, "--input", '{"doc": "cli", "tone": "plain"}', env=env, check=False
    )
    assert failed.returncode == 1
    [listed] = json.loads(run_flowstore("runs", "list", "--json", env=env).stdout)
    at = json.loads(
        run_flowstore("runs", "show", listed["id"], "--at", "3", "--json", env=env).stdout
    )
    assert at["seq"] == 3 and at["status"] == "running"
    assert [node["node"] for node in at["nodes"]] == ["fetch"]
    bad = run_flowstore("runs", "show", listed["id"], "--at", "0", env=env, check=False)
    assert bad.returncode == 1 and "is not one of them" in bad.stderr
    # The fork runs the module's workflow afresh in a new process: draft is still broken.
    forked = run_flowstore(
        "runs", "fork", listed["id"][:8], source, "--from", "publish", env=env, check=False
    )
    assert forked.returncode == 1 and "new run" in forked.stderr
    refused = run_flowstore(
        "runs", "fork", listed["id"], source, "--from", "nowhere", env=env, check=False
    )
    assert "has no node 'nowhere'" in refused.stderr


async def test_a_client_queues_a_fork_that_a_worker_executes(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[flow], poll_seconds=0.05) as engine:
        failed = await engine.run(flow, {"doc": "hello", "tone": "casual"})
        before = dict(calls)
        broken["draft"] = False
        async with Client(migrated_url, poll_seconds=0.05) as client:
            with pytest.raises(ExecutionError, match=r"has no node 'nope'.*its nodes: fetch"):
                await client.fork(failed.id, "nope")
            with pytest.raises(InvalidValue):
                await client.fork(failed.id, "draft", inputs={"tone": 3})
            forked_id = await client.fork(failed.id, "draft", inputs={"tone": "formal"})
            forked = await client.wait(forked_id)
            log = await client.store.read_transitions(forked_id)
    assert (forked.status, forked.output) == (RunStatus.SUCCEEDED, "formal: HELLO (5 chars)")
    # Only the node and what follows it ran again, on the worker; the rest was kept.
    nodes = ("fetch", "summary", "draft", "shorten", "publish")
    ran = {node: calls[node] - before.get(node, 0) for node in nodes}
    assert ran == {"fetch": 0, "summary": 0, "draft": 1, "shorten": 0, "publish": 1}
    statuses = [t.status for t in log if t.kind is TransitionKind.RUN]
    assert statuses == ["queued", "running", "succeeded"]
    [forked_event] = [t for t in log if t.name == "forked"]
    assert forked_event.payload == {"from_run": failed.id, "from_node": "draft"}
