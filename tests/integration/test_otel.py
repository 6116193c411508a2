"""A run's spans are exported to OpenTelemetry when it ends, as one tree."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from flowstore import Retry, Workflow
from flowstore.runtime import otel
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine
from flowstore.store import RunStatus


def traced_flow() -> Workflow:
    flow = Workflow("traced", output="shout")

    @flow.node(retry=Retry(attempts=2, backoff=0, jitter=False))
    async def fetch(word: str, ctx: NodeContext) -> str:
        if ctx.attempt == 1:
            raise ConnectionError("refused")
        return word

    @flow.node
    async def shout(fetch: str) -> str:
        if fetch == "boom":
            raise ValueError("no shouting")
        return fetch.upper()

    return flow


async def test_spans_are_exported_as_a_tree_with_the_times_measured(sqlite_url: str) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    async with Engine(sqlite_url, workers=0, tracer=provider.get_tracer("test")) as engine:
        run = await engine.run(traced_flow(), {"word": "hi"})
        failed = await engine.run(traced_flow(), {"word": "boom"})
        stored = await engine.store.read_trace(run.id)
    assert run.status is RunStatus.SUCCEEDED and failed.status is RunStatus.FAILED

    spans = [s for s in exporter.get_finished_spans() if s.attributes["flowstore.run_id"] == run.id]
    by_name = {s.name: s for s in spans}
    assert set(by_name) == {"run traced", "node fetch", "node shout", "attempt 1", "attempt 2"}
    root = by_name["run traced"]
    assert root.parent is None
    assert by_name["node fetch"].parent.span_id == root.context.span_id
    assert by_name["attempt 1"].parent.span_id == by_name["node fetch"].context.span_id
    assert all(s.context.trace_id == root.context.trace_id for s in spans)
    assert by_name["attempt 1"].status.status_code is StatusCode.ERROR
    assert by_name["node fetch"].start_time <= by_name["attempt 1"].start_time
    assert by_name["attempt 2"].end_time <= by_name["node fetch"].end_time + 1_000_000
    assert sorted(s.name for s in stored) == sorted(by_name), "SQL and OpenTelemetry agree"

    failed_root = [
        s
        for s in exporter.get_finished_spans()
        if s.attributes["flowstore.run_id"] == failed.id and s.parent is None
    ]
    assert [s.status.status_code for s in failed_root] == [StatusCode.ERROR]


def test_without_a_configured_provider_nothing_is_exported() -> None:
    assert otel.available()
    assert otel.default_tracer() is None  # the global provider is the API's placeholder
