"""Hooks on engines and workflows: told of committed changes, and never break a run."""

from __future__ import annotations

import asyncio
import logging

import pytest

from flowstore import Cache, Retry, Workflow
from flowstore.hooks import HookEvent
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine
from flowstore.store import RunStatus


def retrying_flow() -> Workflow:
    flow = Workflow("hooked", output="report")

    @flow.node(retry=Retry(attempts=2, backoff=0, jitter=False))
    async def fetch(url: str, ctx: NodeContext) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("refused")
        return url

    @flow.node(cache=Cache())
    async def report(fetch: str) -> str:
        return fetch.upper()

    return flow


async def test_hooks_hear_of_every_step_sync_or_async(migrated_url: str) -> None:
    flow = retrying_flow()
    heard: list[tuple[str, str | None, int | None, str | None]] = []
    heard_async: list[tuple[str, str | None, int | None, str | None]] = []
    workflow_heard: list[str] = []

    async with Engine(migrated_url, workers=0) as engine:

        @engine.on("run_start")
        @engine.on("run_end")
        @engine.on("node_start")
        @engine.on("node_end")
        def sync_hook(event: HookEvent) -> None:
            heard.append((event.kind, event.node, event.attempt, event.status))

        @engine.on("node_retry")
        @engine.on("node_error")
        @engine.on("cache_hit")
        async def async_hook(event: HookEvent) -> None:
            await asyncio.sleep(0.01)  # still heard before run() returns
            heard_async.append((event.kind, event.node, event.attempt, event.status))

        flow.on("run_end", lambda event: workflow_heard.append(event.status or ""))
        first = await engine.run(flow, {"url": "a"})
        assert first.status is RunStatus.SUCCEEDED
        assert heard == [
            ("run_start", None, None, None),
            ("node_start", "fetch", 1, None),
            ("node_start", "fetch", 2, None),
            ("node_end", "fetch", None, "succeeded"),
            ("node_start", "report", 1, None),
            ("node_end", "report", None, "succeeded"),
            ("run_end", None, None, "succeeded"),
        ]
        assert sorted(heard_async) == [
            ("node_error", "fetch", 1, None),
            ("node_retry", "fetch", 1, None),
        ]
        heard_async.clear()
        await engine.run(flow, {"url": "a"})
        assert sorted(heard_async) == [
            ("cache_hit", "report", None, None),
            ("node_error", "fetch", 1, None),
            ("node_retry", "fetch", 1, None),
        ]
        assert workflow_heard == ["succeeded", "succeeded"]

        other = Workflow("other")
        other.node(name="noop")(noop)
        await engine.run(other, {"x": 1})
        assert workflow_heard == ["succeeded", "succeeded"], "a workflow's hook heard another's"


async def noop(x: int) -> int:
    return x


async def test_a_failing_hook_is_reported_and_the_run_goes_on(
    migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    flow = retrying_flow()

    def broken(event: HookEvent) -> None:
        raise RuntimeError(f"hook broke on {event.kind}")

    async def broken_later(event: HookEvent) -> None:
        raise KeyError(event.node)

    async with Engine(migrated_url, workers=0) as engine:
        engine.on("run_start", broken)
        engine.on("node_end", broken_later)
        with caplog.at_level(logging.ERROR, logger="flowstore.hooks"):
            run = await engine.run(flow, {"url": "b"})
        assert run.status is RunStatus.SUCCEEDED
        reports = [r for r in await engine.store.list_errors(run_id=run.id)]
        failed = sorted(
            (r.error_type, r.details["event"]) for r in reports if r.outcome == "hook_failed"
        )
        assert failed == [
            ("builtins.KeyError", "node_end"),
            ("builtins.KeyError", "node_end"),
            ("builtins.RuntimeError", "run_start"),
        ]
        assert "hook" in caplog.text and "broken" in caplog.text


def test_an_unknown_event_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown hook event 'node_done'; one of: cache_hit"):
        Workflow("w").on("node_done", print)  # type: ignore[arg-type]


async def test_hooks_get_values_as_engine_events_give_them(migrated_url: str) -> None:
    flow = Workflow("progress", output="count")

    @flow.node
    async def count(n: int, ctx: NodeContext) -> dict[str, int]:
        await ctx.emit("progress", {"done": n})
        return {"total": n}

    heard: list[tuple[str, object]] = []
    async with Engine(migrated_url, workers=0) as engine:
        engine.on("event", lambda event: heard.append(("event", event.payload)))
        engine.on("node_end", lambda event: heard.append(("node_end", event.output)))
        engine.on("run_end", lambda event: heard.append(("run_end", event.output)))
        run = await engine.run(flow, {"n": 10})
        logged = [
            event.payload  # type: ignore[union-attr]
            async for event in engine.events(run.id, follow=False)
            if event.type == "event"
        ]
    assert logged == [{"done": 10}]
    assert heard == [
        ("event", {"done": 10}),
        ("node_end", {"total": 10}),
        ("run_end", {"total": 10}),
    ]
    assert type(heard[0][1]) is dict
