"""Streams of a run's events: live, from the log, resumable by sequence number."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from flowstore import Workflow
from flowstore.errors import ExecutionError, RunNotFound
from flowstore.events import CustomEvent, NodeEvent, RunEvent, TokenEvent, stream_event_adapter
from flowstore.runtime.context import NodeContext, RunContext
from flowstore.runtime.engine import Engine
from flowstore.store import EventChange, NewRun, RunId, RunStatus, WorkerId, open_store


def talking_flow() -> Workflow:
    flow = Workflow("talk", output="shout")

    @flow.node
    async def answer(question: str, ctx: NodeContext) -> AsyncIterator[str]:
        await ctx.emit("thinking", {"about": question})
        for piece in ("The ", "answer ", "is ", "42"):
            yield piece

    @flow.node
    async def shout(answer: str, ctx: NodeContext) -> str:
        await ctx.emit_token("!")
        return answer.upper()

    return flow


def comparable(events: list[Any]) -> list[dict[str, Any]]:
    return [event.model_dump(exclude={"at"}) for event in events]


async def test_a_stream_shows_every_event_once_in_order_and_the_log_agrees(
    migrated_url: str,
) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        streamed = [event async for event in engine.stream(talking_flow(), {"question": "q"})]
        run_id = streamed[0].run_id
        replayed = [event async for event in engine.events(run_id, follow=False)]

    assert [event.seq for event in streamed] == list(range(1, len(streamed) + 1))
    assert comparable(streamed) == comparable(replayed)
    tokens = [(e.node, e.text, e.attempt) for e in streamed if isinstance(e, TokenEvent)]
    assert tokens == [
        ("answer", "The ", 1),
        ("answer", "answer ", 1),
        ("answer", "is ", 1),
        ("answer", "42", 1),
        ("shout", "!", 1),
    ]
    [thinking] = [e for e in streamed if isinstance(e, CustomEvent) and e.name == "thinking"]
    assert thinking.payload == {"about": "q"} and thinking.node == "answer"
    ends = [e for e in streamed if isinstance(e, NodeEvent) and e.status == "succeeded"]
    assert [(e.node, e.output) for e in ends] == [
        ("answer", "The answer is 42"),
        ("shout", "THE ANSWER IS 42"),
    ]
    last = streamed[-1]
    assert isinstance(last, RunEvent) and last.status == "succeeded"
    assert last.output == "THE ANSWER IS 42"
    # Events are plain JSON for whoever reads them elsewhere.
    assert stream_event_adapter.validate_json(stream_event_adapter.dump_json(last)) == last


async def test_reading_after_a_sequence_number_gives_exactly_the_rest(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(talking_flow(), {"question": "q"})
        everything = [event async for event in engine.events(run.id)]  # ended: returns
        for after in (0, 3, len(everything) - 1, len(everything)):
            rest = [event async for event in engine.events(run.id, after=after)]
            assert comparable(rest) == comparable(everything[after:])
        with pytest.raises(RunNotFound):
            [event async for event in engine.events("no-such-run")]


async def test_tokens_reach_a_reader_before_the_node_ends(migrated_url: str) -> None:
    flow = Workflow("slow", output="write")
    heard = asyncio.Event()

    @flow.node
    async def write(ctx: NodeContext) -> str:
        await ctx.emit_token("first")
        await asyncio.wait_for(heard.wait(), 10)  # only a live reader can let it finish
        return "done"

    async with Engine(migrated_url, workers=0) as engine:
        async for event in engine.stream(flow, {}):
            if isinstance(event, TokenEvent):
                assert event.text == "first"
                heard.set()
            last = event
    assert isinstance(last, RunEvent) and last.status == "succeeded"


async def test_a_reader_in_the_middle_of_a_run_misses_nothing(migrated_url: str) -> None:
    flow = Workflow("long", output="count")
    go = asyncio.Event()

    @flow.node
    async def count(ctx: NodeContext) -> int:
        for index in range(300):
            await ctx.emit_token(str(index))
            if index == 100:
                await go.wait()
        return 300

    async with Engine(migrated_url, workers=0) as engine:
        run_id = "a1b2c3d4-0000-4000-8000-000000000001"
        running = asyncio.create_task(engine.run(flow, {}, run_id=run_id))
        while not go.is_set():
            await asyncio.sleep(0.01)
            try:
                async for event in engine.events(run_id, follow=False):
                    if isinstance(event, TokenEvent) and event.text == "50":
                        go.set()  # tokens up to 100 are queued or committed; join now
                        break
            except RunNotFound:
                continue  # not created yet
        joined = [event async for event in engine.events(run_id, after=5)]
        assert (await running).status is RunStatus.SUCCEEDED
    assert [event.seq for event in joined] == list(range(6, joined[-1].seq + 1))
    texts = [event.text for event in joined if isinstance(event, TokenEvent)]
    assert texts == [str(index) for index in range(len(texts) and 300 - len(texts), 300)]


async def test_emitting_checks_names_and_payloads(migrated_url: str) -> None:
    flow = Workflow("bad")

    @flow.node
    async def reserved(ctx: NodeContext) -> None:
        await ctx.emit("token", "x")

    other = Workflow("worse")

    @other.node
    async def unstorable(ctx: NodeContext) -> None:
        await ctx.emit("progress", {"when": object()})

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {})
        assert run.status is RunStatus.FAILED and run.error is not None
        assert "cannot emit an event named 'token'" in run.error["message"]
        run = await engine.run(other, {})
        assert run.status is RunStatus.FAILED and run.error is not None
        assert "payload of event 'progress' of node 'unstorable'" in run.error["message"]
    outside = NodeContext(RunContext(RunId("r"), "w", {}), "n", "", 1, logging.getLogger("t"))
    with pytest.raises(ExecutionError, match="emits outside of an executing run"):
        await outside.emit_token("x")


async def test_a_reader_elsewhere_is_woken_by_each_commit_on_postgresql(
    migrated_url: str,
) -> None:
    writer_store = await open_store(migrated_url)
    reader_store = await open_store(migrated_url)
    try:
        run = await writer_store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        wake = asyncio.Event()
        async with reader_store.watch(run.id, wake) as told:
            assert told is migrated_url.startswith("postgresql")
            await writer_store.record_transitions(run.id, 1, [EventChange("e")])
            if told:
                await asyncio.wait_for(wake.wait(), 10)
    finally:
        await writer_store.close()
        await reader_store.close()


async def test_a_reader_that_falls_behind_catches_up_from_the_log(
    migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowstore.runtime import streams

    monkeypatch.setattr(streams, "_HOLD", 50)
    flow = Workflow("chatty", output="speak")

    @flow.node
    async def speak(ctx: NodeContext) -> int:
        for index in range(400):
            await ctx.emit_token(str(index))
        return 400

    async with Engine(migrated_url, workers=0) as engine:
        seen = []
        async for event in engine.stream(flow, {}):
            seen.append(event)
            if len(seen) == 3:
                await asyncio.sleep(0.5)  # the node emits all 400 meanwhile: cut loose
        replayed = [event async for event in engine.events(seen[0].run_id)]
    assert [event.seq for event in seen] == list(range(1, len(seen) + 1))
    assert comparable(seen) == comparable(replayed)
    texts = [event.text for event in seen if isinstance(event, TokenEvent)]
    assert texts == [str(index) for index in range(400)]


async def test_a_reader_shown_changes_its_run_never_committed_is_told(
    migrated_url: str,
) -> None:
    from flowstore.events import StreamInterrupted
    from flowstore.runtime.streams import LiveRuns, follow

    store = await open_store(migrated_url)
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        runs = LiveRuns()
        with runs.executing(run.id) as live:
            live.confirmed(run.last_seq)
            reader = follow(store, runs, run.id)
            first = await anext(reader)  # from the log
            live.publish(run.last_seq + 1, [EventChange("token", "x", node="n")])
            shown = await anext(reader)  # live, before any commit
            assert (first.seq, shown.seq) == (run.last_seq, run.last_seq + 1)
            live.interrupted()  # its commit failed: another worker owns the run now
            with pytest.raises(StreamInterrupted) as told:
                await anext(reader)
        assert told.value.resume_after == run.last_seq
    finally:
        await store.close()
