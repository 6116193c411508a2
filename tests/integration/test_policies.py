"""Retry, timeout and fallback in real runs, reported in SQL, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

from flowstore import Breaker, Cache, ExecutionConfig, Fallback, Retry, Workflow
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine
from flowstore.store import NodeStatus, RunStatus, TransitionKind

QUICK = Retry(attempts=3, backoff=0.001, jitter=False)


class Unavailable(ConnectionError):
    pass


async def _node(engine: Engine, run_id: str, name: str) -> Any:
    [execution] = [e for e in await engine.store.read_node_executions(run_id) if e.node == name]
    return execution


async def test_a_failing_node_is_retried_and_every_retry_is_reported(migrated_url: str) -> None:
    flow = Workflow("flaky", output="done")
    calls: list[int] = []

    @flow.node(retry=QUICK)
    async def fetch(url: str, ctx: NodeContext) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise Unavailable(f"{url} refused attempt {ctx.attempt}")
        return "page"

    @flow.node
    async def done(fetch: str) -> str:
        return fetch.upper()

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"url": "https://example.test"})
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, "PAGE")
        assert calls == [1, 2, 3]
        execution = await _node(engine, run.id, "fetch")
        assert (execution.status, execution.attempt, execution.error) == (
            NodeStatus.SUCCEEDED,
            3,
            None,
        )
        reports = await engine.store.list_errors(run_id=run.id)
        assert [(r.node, r.attempt, r.outcome) for r in reports] == [
            ("fetch", 1, "retried"),
            ("fetch", 2, "retried"),
        ]
        assert reports[0].error_type == f"{__name__}.Unavailable"
        assert "refused attempt 1" in reports[0].message and "Traceback" in (
            reports[0].traceback or ""
        )
        log = await engine.store.read_transitions(run.id)
        fetch_log = [(t.name or t.status, t.attempt) for t in log if t.node == "fetch"]
        assert fetch_log == [
            ("running", 1),
            ("error", 1),
            ("running", 2),
            ("error", 2),
            ("running", 3),
            ("succeeded", None),
        ]


async def test_an_error_not_retried_fails_the_run_with_a_report(migrated_url: str) -> None:
    flow = Workflow("picky")
    calls = 0

    @flow.node(retry=Retry(attempts=5, backoff=0, retry_on=("ConnectionError",)))
    async def parse(text: str) -> int:
        nonlocal calls
        calls += 1
        return int(text)

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"text": "twelve"})
        assert run.status is RunStatus.FAILED and calls == 1
        assert run.error is not None and run.error["type"] == "builtins.ValueError"
        [report] = await engine.store.list_errors(run_id=run.id)
        assert (report.node, report.attempt, report.outcome) == ("parse", 1, "failed_run")


async def test_a_timeout_cancels_the_node_and_a_retry_can_follow(migrated_url: str) -> None:
    flow = Workflow("deadline")
    stopped: list[int] = []

    @flow.node(timeout=0.05, retry=Retry(attempts=2, backoff=0, retry_on=("TimeoutError",)))
    async def lookup(key: str, ctx: NodeContext) -> str:
        if ctx.attempt == 1:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                stopped.append(ctx.attempt)
                raise
        return key * 2

    @flow.node(timeout=0.05)
    async def hang(lookup: str) -> str:
        await asyncio.sleep(30)
        return lookup

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"key": "ab"})
        assert stopped == [1], "the first attempt was not cancelled at its deadline"
        assert (await _node(engine, run.id, "lookup")).output == "abab"
        assert run.status is RunStatus.FAILED
        assert run.error is not None and run.error["type"] == "flowstore.errors.NodeTimeout"
        assert "node 'hang' took longer than its timeout of 0.05 s" in run.error["message"]
        hang = await _node(engine, run.id, "hang")
        assert hang.status is NodeStatus.FAILED
        reports = [(r.node, r.error_type, r.outcome) for r in await engine.store.list_errors()]
        assert reports == [
            ("lookup", "flowstore.errors.NodeTimeout", "retried"),
            ("hang", "flowstore.errors.NodeTimeout", "failed_run"),
        ]


async def always_down(city: str) -> str:
    raise Unavailable(f"no weather for {city}")


def forecast_from_cache(city: str) -> str:
    return f"{city}: as yesterday"


@pytest.mark.parametrize(
    ("fallback", "expected", "source"),
    [
        (Fallback(value="unknown"), "unknown", "value"),
        (Fallback(call=f"{__name__}:forecast_from_cache"), "Oslo: as yesterday", "call"),
        (Fallback(node="climate"), "Oslo: cold", "node"),
    ],
)
async def test_a_node_that_fails_for_good_falls_back(
    migrated_url: str, fallback: Fallback, expected: str, source: str
) -> None:
    flow = Workflow("weather", output="report")

    @flow.node
    async def climate(city: str) -> str:
        return f"{city}: cold"

    flow.node(name="forecast", retry=QUICK, fallback=fallback, after=["climate"])(always_down)

    @flow.node
    async def report(forecast: str) -> str:
        return f"report: {forecast}"

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"city": "Oslo"})
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, f"report: {expected}")
        forecast = await _node(engine, run.id, "forecast")
        assert (forecast.status, forecast.output, forecast.attempt) == (
            NodeStatus.SUCCEEDED,
            expected,
            3,
        )
        outcomes = [(r.attempt, r.outcome) for r in await engine.store.list_errors(run_id=run.id)]
        assert outcomes == [(1, "retried"), (2, "retried"), (3, "fell_back")]
        [event] = [
            t
            for t in await engine.store.read_transitions(run.id)
            if t.kind is TransitionKind.EVENT and t.name == "fallback"
        ]
        assert (event.node, event.payload) == ("forecast", {"source": source})


async def test_a_fallback_node_without_output_fails_the_run_clearly(migrated_url: str) -> None:
    flow = Workflow("weather")

    @flow.node(when="city == 'nowhere'")
    async def climate(city: str) -> str:
        return f"{city}: cold"

    flow.node(
        name="forecast", fallback=Fallback(node="climate"), after=["climate"], join="all_done"
    )(always_down)

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"city": "Oslo"})
        assert run.status is RunStatus.FAILED and run.error is not None
        assert run.error["message"] == (
            "node 'forecast' failed and its fallback node 'climate' has no output to give "
            "instead (it was skipped or failed)"
        )


async def test_policies_come_from_the_dsl_too(migrated_url: str) -> None:
    flow = Workflow.load(
        {
            "name": "declared",
            "inputs": {"city": "str"},
            "config": {"node_timeout": 5},
            "nodes": [
                {
                    "name": "forecast",
                    "call": f"{__name__}:always_down",
                    "inputs": ["city"],
                    "retry": {"attempts": 2, "backoff": 0, "retry_on": ["ConnectionError"]},
                    "fallback": {"call": f"{__name__}:forecast_from_cache"},
                }
            ],
        }
    )
    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"city": "Bergen"})
        assert run.status is RunStatus.SUCCEEDED
        assert run.output == "Bergen: as yesterday"
        outcomes = [r.outcome for r in await engine.store.list_errors(run_id=run.id)]
        assert outcomes == ["retried", "fell_back"]


async def test_a_circuit_breaker_opens_fails_fast_then_lets_a_trial_through(
    migrated_url: str,
) -> None:
    flow = Workflow("guarded")
    service = {"up": False, "calls": 0}

    @flow.node(breaker=Breaker(name="weather-api", failure_threshold=2, reset_after=0.3))
    async def forecast(city: str) -> str:
        service["calls"] += 1
        if not service["up"]:
            raise Unavailable("weather-api is down")
        return f"{city}: sunny"

    async with Engine(migrated_url, workers=0) as engine, Engine(migrated_url, workers=0) as other:
        first = await engine.run(flow, {"city": "Oslo"})
        tripping = await engine.run(flow, {"city": "Oslo"})
        assert first.status is tripping.status is RunStatus.FAILED
        assert service["calls"] == 2
        # Another engine (another worker) shares the breaker's state through the store.
        refused = await other.run(flow, {"city": "Oslo"})
        assert service["calls"] == 2, "an open breaker let a call through"
        assert refused.error is not None
        assert refused.error["type"] == "flowstore.errors.CircuitOpen"
        assert "circuit breaker 'weather-api' is open after 2 failures" in refused.error["message"]
        state = await engine.store.get_breaker("weather-api")
        assert state is not None and (state.state, state.failure_count) == ("open", 2)

        await asyncio.sleep(0.35)
        service["up"] = True
        trial = await other.run(flow, {"city": "Oslo"})
        assert (trial.status, trial.output) == (RunStatus.SUCCEEDED, "Oslo: sunny")
        state = await engine.store.get_breaker("weather-api")
        assert state is not None and (state.state, state.failure_count) == ("closed", 0)

        def moves(log: list[Any]) -> list[tuple[str, str]]:
            return [(t.payload["from"], t.payload["to"]) for t in log if t.name == "breaker"]

        assert moves(await engine.store.read_transitions(tripping.id)) == [("closed", "open")]
        assert moves(await engine.store.read_transitions(trial.id)) == [
            ("open", "half_open"),
            ("half_open", "closed"),
        ]


class Summary(BaseModel):
    text: str
    words: int


def by_normalized_text(text: str) -> str:
    return " ".join(text.lower().split())


async def test_a_cached_node_is_served_from_the_store_across_engines(migrated_url: str) -> None:
    calls: list[str] = []

    def summarizing(name: str, cache: Cache) -> Workflow:
        flow = Workflow(name)

        @flow.node(cache=cache)
        async def summarize(text: str) -> Summary:
            calls.append(text)
            return Summary(text=text[:10], words=len(text.split()))

        return flow

    flow = summarizing("summaries", Cache(ttl=60))
    async with Engine(migrated_url, workers=0) as engine, Engine(migrated_url, workers=0) as other:
        first = await engine.run(flow, {"text": "a long article"})
        again = await other.run(flow, {"text": "a long article"})  # another worker
        assert calls == ["a long article"]
        assert first.output == again.output == {"text": "a long art", "words": 3}
        hits = [t for t in await other.store.read_transitions(again.id) if t.name == "cache_hit"]
        assert len(hits) == 1 and hits[0].node == "summarize"
        assert (await _node(other, again.id, "summarize")).status is NodeStatus.SUCCEEDED

        await engine.run(flow, {"text": "another article"})
        assert calls == ["a long article", "another article"], "other inputs must miss"
        # A changed definition of the node misses too: its entries were for the old one.
        changed = summarizing("summaries", Cache(ttl=61))
        await engine.run(changed, {"text": "a long article"})
        assert len(calls) == 3


async def test_cache_entries_expire_and_a_key_function_chooses_what_matters(
    migrated_url: str,
) -> None:
    flow = Workflow("normalized")
    calls: list[str] = []

    @flow.node(cache=Cache(ttl=0.3, key=f"{__name__}:by_normalized_text"))
    async def answer(text: str) -> str:
        calls.append(text)
        return f"answer to {text}"

    async with Engine(migrated_url, workers=0) as engine:
        await engine.run(flow, {"text": "What is  SQL?"})
        hit = await engine.run(flow, {"text": "what is sql?"})
        assert calls == ["What is  SQL?"] and hit.output == "answer to What is  SQL?"
        await asyncio.sleep(0.35)
        await engine.run(flow, {"text": "what is sql?"})
        assert calls == ["What is  SQL?", "what is sql?"], "an expired entry was served"


async def test_a_fallback_output_is_never_cached(migrated_url: str) -> None:
    flow = Workflow("unreliable")

    flow.node(name="forecast", cache=Cache(), fallback=Fallback(value="unknown"))(always_down)

    async with Engine(migrated_url, workers=0) as engine:
        first = await engine.run(flow, {"city": "Oslo"})
        second = await engine.run(flow, {"city": "Oslo"})
        assert first.output == second.output == "unknown"
        assert [r.outcome for r in await engine.store.list_errors()] == ["fell_back"] * 2


async def test_a_run_timeout_cancels_what_runs_and_fails_the_run(migrated_url: str) -> None:
    flow = Workflow("bounded", config=ExecutionConfig(run_timeout=0.2))
    stopped: list[str] = []

    @flow.node
    async def quick(x: int) -> int:
        return x

    @flow.node
    async def slow(quick: int) -> int:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.append("slow")
            raise
        return quick

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"x": 1})
        assert stopped == ["slow"]
        assert run.status is RunStatus.FAILED and run.error is not None
        assert run.error["type"] == "flowstore.errors.RunTimeout"
        assert "took longer than its run_timeout of 0.2 s" in run.error["message"]
        statuses = {e.node: e.status for e in await engine.store.read_node_executions(run.id)}
        assert statuses == {"quick": NodeStatus.SUCCEEDED, "slow": NodeStatus.CANCELLED}
        [report] = await engine.store.list_errors(run_id=run.id)
        assert (report.node, report.error_type, report.outcome) == (
            None,
            "flowstore.errors.RunTimeout",
            "failed_run",
        )


async def test_an_output_of_the_wrong_type_fails_loudly_despite_retry_and_fallback(
    migrated_url: str,
) -> None:
    flow = Workflow("typed", output="count")
    calls: list[int] = []

    @flow.node(retry=QUICK, fallback=Fallback(value=0))
    async def count(text: str, ctx: NodeContext) -> int:
        calls.append(ctx.attempt)
        return text  # type: ignore[return-value]  # the mistake under test

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"text": "many"})
        assert run.status is RunStatus.FAILED and run.error is not None
        assert run.error["type"] == "flowstore.errors.InvalidValue"
        assert "node 'count': output" in run.error["message"]
        assert calls == [1]  # not retried
        outcomes = [r.outcome for r in await engine.store.list_errors(run_id=run.id)]
        assert outcomes == ["failed_run"]  # not fallen back


async def test_a_policy_that_names_invalid_value_covers_it(migrated_url: str) -> None:
    flow = Workflow("typed", output="count")

    @flow.node(fallback=Fallback(value=0, on=["InvalidValue"]))
    async def count(text: str) -> int:
        return text  # type: ignore[return-value]

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"text": "many"})
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, 0)


async def test_a_resource_missing_from_the_engine_fails_loudly_despite_a_fallback(
    migrated_url: str,
) -> None:
    flow = Workflow("search", resources=["http"], output="fetch")

    @flow.node(retry=QUICK, fallback=Fallback(value=[]))
    async def fetch(query: str, http: Any) -> list[str]:
        return [query]

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"query": "wal"})
        assert run.status is RunStatus.FAILED and run.error is not None
        assert run.error["type"] == "flowstore.errors.ConfigurationError"
        assert run.error["message"].startswith(
            "node 'fetch' needs the resource 'http', which this engine does not provide: "
            "give it as Engine(resources={'http': ...})"
        )
        assert [r.outcome for r in await engine.store.list_errors(run_id=run.id)] == ["failed_run"]


async def test_a_fallback_limited_to_some_errors_lets_the_others_fail(migrated_url: str) -> None:
    flow = Workflow("weather", output="forecast")
    flow.node(name="forecast", fallback=Fallback(value="?", on=["TimeoutError"]))(always_down)

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"city": "Oslo"})
        assert run.status is RunStatus.FAILED
