"""The `llm` node against a fake OpenAI-compatible server on 127.0.0.1 that streams
server-sent events: tokens, memory, faults (429 with Retry-After, 500, a cut stream, a garbled
chunk), structured output and its repair, tool calls, the cache, the shared breaker, and
usage in SQL. Each fault ends as the policy says, with nothing stored twice."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from flowstore import Retry, Workflow
from flowstore.errors import DefinitionError, StoreUnavailable
from flowstore.events import CustomEvent, TokenEvent
from flowstore.llm import LlmConfig, LlmEndpoint
from flowstore.llm.testing import FakeChatServer, FakeReply, Fault
from flowstore.runtime.engine import Engine
from flowstore.store import RunStatus
from tests.support.faults import Fault as FaultyStore

FAST = Retry(attempts=3, backoff=0.01, jitter=False)


class Verdict(BaseModel):
    """A ticket's category and how urgent it is."""

    category: str
    urgent: bool


def weather(city: str) -> str:
    """The weather in a city."""
    return {"paris": "18 C and clear"}.get(city.lower(), "unknown")


async def add(a: int, b: int) -> int:
    """The sum of two numbers."""
    return a + b


def ask_flow(server: FakeChatServer, retry: Retry | None = FAST, **config: Any) -> Workflow:
    flow = Workflow("ask", inputs={"question": "str", "user": "str"}, output="answer")
    settings = LlmConfig(
        **{
            "model": "fake-1",
            "base_url": server.base_url,
            "api_key_env": None,
            "prompt": "{question}",
            "thread": "chat-{user}",
            "prices": {"fake-1": {"prompt": 2.0, "completion": 10.0}},
            **config,
        }
    )
    options = {} if retry is None else {"retry": retry}
    flow.llm("answer", settings, inputs=["question", "user"], **options)
    return flow


async def _events(engine: Engine, run_id: str) -> list[Any]:
    return [event async for event in engine.events(run_id)]


async def test_tokens_stream_and_the_turn_is_kept_once(migrated_url: str) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        flow = ask_flow(server)
        run = await engine.run(flow, {"question": "hello there", "user": "ana"})
        again = await engine.run(flow, {"question": "and again", "user": "ana"})
        log = await _events(engine, run.id)
        thread = await engine.memory.thread("chat-ana").messages()
        calls = await engine.store.list_llm_calls(workflow="ask")
        [usage] = await engine.store.llm_usage(workflow="ask")

    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "You said: hello there")
    tokens = [event.text for event in log if isinstance(event, TokenEvent)]
    assert tokens == ["You ", "said: ", "hello ", "there"]
    assert [(m.role, m.content) for m in thread] == [
        ("user", "hello there"),
        ("assistant", "You said: hello there"),
        ("user", "and again"),
        ("assistant", "You said: and again"),
    ]
    # The second run sent the thread's history before its prompt.
    assert [m["content"] for m in server.requests[1]["messages"]] == [
        "hello there",
        "You said: hello there",
        "and again",
    ]
    assert server.requests[0]["stream"] is True
    assert [(c.outcome, c.run_id, c.model, c.finish_reason) for c in calls] == [
        ("ok", run.id, "fake-1", "stop"),
        ("ok", again.id, "fake-1", "stop"),
    ]
    first = calls[0]
    assert (first.prompt_tokens, first.completion_tokens, first.total_tokens) == (2, 4, 6)
    assert first.cost == pytest.approx((2 * 2.0 + 4 * 10.0) / 1e6)
    assert first.latency_ms > 0 and first.first_token_ms is not None
    # The call's event follows its tokens in the log.
    [call_event] = [e for e in log if isinstance(e, CustomEvent) and e.name == "llm_call"]
    assert call_event.seq == first.seq and call_event.payload["outcome"] == "ok"
    assert (usage.calls, usage.ok, usage.failed, usage.cached) == (2, 2, 0, 0)
    assert usage.total_tokens == sum(c.total_tokens or 0 for c in calls)
    assert usage.cost == pytest.approx(sum(c.cost or 0 for c in calls))


FAULTS = {
    "429 with Retry-After": Fault(status=429, retry_after=0.05),
    "500": Fault(status=500),
    "stream cut": Fault(cut_after=2),
    "garbled chunk": Fault(garble_after=1),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_a_fault_is_retried_and_nothing_is_stored_twice(
    migrated_url: str, fault: Fault
) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        server.faults.append(fault)
        run = await engine.run(ask_flow(server), {"question": "one two three", "user": "bo"})
        log = await _events(engine, run.id)
        thread = await engine.memory.thread("chat-bo").messages()
        calls = await engine.store.list_llm_calls(run_id=run.id)
        errors = await engine.store.list_errors(run_id=run.id)

    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "You said: one two three")
    assert len(server.requests) == 2
    assert [(c.outcome, c.attempt) for c in calls] == [("failed", 1), ("ok", 2)]
    assert calls[0].error and calls[0].total_tokens is None
    if fault.status is not None:
        assert calls[0].status_code == fault.status
    assert [(e.error_type, e.outcome, e.attempt) for e in errors] == [
        ("flowstore.errors.LlmCallFailed", "retried", 1)
    ]
    # The first attempt's tokens are marked dead by its failed call and its retry, which
    # follow them; the second attempt's make up the output.
    by_attempt: dict[int | None, list[str]] = {}
    for event in log:
        if isinstance(event, TokenEvent):
            by_attempt.setdefault(event.attempt, []).append(event.text)
    assert "".join(by_attempt.pop(2)) == run.output
    assert set(by_attempt) <= {1}
    retried = next(e.seq for e in log if isinstance(e, CustomEvent) and e.name == "error")
    assert all(e.seq < retried for e in log if isinstance(e, TokenEvent) and e.attempt == 1)
    assert [(m.role, m.content) for m in thread] == [
        ("user", "one two three"),
        ("assistant", "You said: one two three"),
    ]


async def test_a_fault_past_the_retries_fails_the_run_and_keeps_no_turn(
    migrated_url: str,
) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        server.faults.extend([Fault(status=503), Fault(cut_after=1), Fault(status=500)])
        run = await engine.run(ask_flow(server), {"question": "hi", "user": "cy"})
        thread = await engine.memory.thread("chat-cy").messages()
        calls = await engine.store.list_llm_calls(run_id=run.id)

    assert run.status == RunStatus.FAILED
    assert run.error is not None and run.error["type"] == "flowstore.errors.LlmCallFailed"
    assert "HTTP 500" in run.error["message"]
    assert [c.outcome for c in calls] == ["failed"] * 3
    assert thread == []


async def test_a_stalled_stream_times_out_and_is_retried(migrated_url: str) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        server.faults.append(Fault(stall_after=1, stall_seconds=30))
        started = time.monotonic()
        run = await engine.run(
            ask_flow(server, request_timeout=0.3), {"question": "a b c", "user": "pa"}
        )
        elapsed = time.monotonic() - started
        [failed, ok] = await engine.store.list_llm_calls(run_id=run.id)

    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "You said: a b c")
    assert failed.outcome == "failed" and failed.error is not None
    assert "timed out" in failed.error and ok.outcome == "ok"
    assert elapsed < 10  # the stall was cut short by the read timeout, not waited out


async def test_retry_after_is_honoured(migrated_url: str) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        server.faults.append(Fault(status=429, retry_after=1))
        started = time.monotonic()
        run = await engine.run(
            ask_flow(server, Retry(attempts=2, backoff=0, jitter=False)),
            {"question": "hi", "user": "di"},
        )
        elapsed = time.monotonic() - started
        [report] = await engine.store.list_errors(run_id=run.id)

    assert run.status == RunStatus.SUCCEEDED
    assert report.details == {"delay": 1.0}
    assert elapsed >= 1.0


async def test_the_default_policy_retries_and_a_refused_request_is_not_retried(
    migrated_url: str,
) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        flow = ask_flow(server, retry=None)
        node = flow.compile().nodes["answer"]
        assert node.spec.retry is not None and node.spec.retry.attempts == 4
        server.faults.append(Fault(status=401))
        run = await engine.run(flow, {"question": "hi", "user": "ed"})
        [call] = await engine.store.list_llm_calls(run_id=run.id)

    assert run.status == RunStatus.FAILED
    assert run.error is not None and run.error["type"] == "flowstore.errors.LlmRequestRejected"
    assert len(server.requests) == 1
    assert (call.outcome, call.status_code) == ("failed", 401)


def verdicts(request: dict[str, Any]) -> FakeReply:
    """Invalid JSON first, then (told of the errors) a valid verdict."""
    repairing = any("does not match" in str(m.get("content")) for m in request["messages"])
    repairing |= any(m.get("role") == "tool" for m in request["messages"])
    text = '{"category": "billing", "urgent": true}' if repairing else '{"category": "billing"'
    if request.get("tools"):
        arguments = json.loads(text) if repairing else {"category": "billing"}
        return FakeReply(tool_calls=(("final_answer", arguments),))
    return FakeReply(text)


@pytest.mark.parametrize("mode", ["json_schema", "tool"])
async def test_structured_output_is_repaired(migrated_url: str, mode: str) -> None:
    async with FakeChatServer(verdicts) as server, Engine(migrated_url, workers=0) as engine:
        flow = ask_flow(server, output="tests.integration.test_llm_node:Verdict", output_mode=mode)
        run = await engine.run(flow, {"question": "refund please", "user": "fa"})
        calls = await engine.store.list_llm_calls(run_id=run.id)
        thread = await engine.memory.thread("chat-fa").messages()

    assert (run.status, run.output) == (
        RunStatus.SUCCEEDED,
        {"category": "billing", "urgent": True},
    )
    assert [c.outcome for c in calls] == ["ok", "ok"]  # the reply, and its repair
    first, repair = server.requests
    if mode == "json_schema":
        assert first["response_format"]["json_schema"]["schema"] == Verdict.model_json_schema()
        assert "the reply: Invalid JSON" in repair["messages"][-1]["content"]
    else:
        assert first["tool_choice"]["function"]["name"] == "final_answer"
        assert "urgent: Field required" in repair["messages"][-1]["content"]
    assert [m.role for m in thread] == ["user", "assistant"]
    assert json.loads(thread[-1].content) == run.output


async def test_structured_output_fails_with_the_validation_error(migrated_url: str) -> None:
    async with (
        FakeChatServer(lambda request: "not json at all") as server,
        Engine(migrated_url, workers=0) as engine,
    ):
        flow = ask_flow(server, output="tests.integration.test_llm_node:Verdict", repair_attempts=1)
        run = await engine.run(flow, {"question": "refund", "user": "gu"})

    assert run.status == RunStatus.FAILED
    assert run.error is not None and run.error["type"] == "flowstore.errors.LlmOutputInvalid"
    assert "after 1 repairs" in run.error["message"] and "Invalid JSON" in run.error["message"]
    assert len(server.requests) == 2  # not retried: the same model would fail the same way


def calls_tools(request: dict[str, Any]) -> FakeReply:
    last = request["messages"][-1]
    if last["role"] == "tool":
        results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
        return FakeReply(f"Done: {' | '.join(results)}")
    return FakeReply(
        tool_calls=(
            ("weather", {"city": "Paris"}),
            ("add", {"a": 2, "b": "x"}),
            ("launch", {}),
        )
    )


async def test_tool_calls_are_routed_looped_and_recorded(migrated_url: str) -> None:
    tools = ["tests.integration.test_llm_node:weather", "tests.integration.test_llm_node:add"]
    async with FakeChatServer(calls_tools) as server, Engine(migrated_url, workers=0) as engine:
        run = await engine.run(ask_flow(server, tools=tools), {"question": "go", "user": "hu"})
        log = await _events(engine, run.id)
        thread = await engine.memory.thread("chat-hu").messages()

    assert run.status == RunStatus.SUCCEEDED
    assert run.output.startswith("Done: 18 C and clear | error: invalid arguments for add")
    assert run.output.endswith("error: there is no tool 'launch' (tools: weather, add)")
    names = [tool["function"]["name"] for tool in server.requests[0]["tools"]]
    assert names == ["weather", "add"]
    weather_tool = server.requests[0]["tools"][0]["function"]
    assert weather_tool["description"] == "The weather in a city."
    assert weather_tool["parameters"]["properties"]["city"]["type"] == "string"
    recorded = [e.payload for e in log if isinstance(e, CustomEvent) and e.name == "tool_call"]
    assert [(r["name"], r.get("result"), "error" in r) for r in recorded] == [
        ("weather", "18 C and clear", False),
        ("add", None, True),
        ("launch", None, True),
    ]
    assert recorded[0]["arguments"] == {"city": "Paris"}
    # The thread holds the round: the call, each result, then the answer.
    assert [m.role for m in thread] == ["user", "assistant", "tool", "tool", "tool", "assistant"]
    assert thread[1].metadata["tool_calls"][0]["function"]["name"] == "weather"


def always_a_tool(request: dict[str, Any]) -> FakeReply:
    return FakeReply(tool_calls=(("weather", {"city": "Oslo"}),))


async def test_tool_rounds_are_bounded(migrated_url: str) -> None:
    tools = ["tests.integration.test_llm_node:weather"]
    async with FakeChatServer(always_a_tool) as server, Engine(migrated_url, workers=0) as engine:
        flow = ask_flow(server, tools=tools, max_tool_rounds=2)
        run = await engine.run(flow, {"question": "go", "user": "io"})

    assert run.status == RunStatus.FAILED
    assert run.error is not None and "after 2 rounds" in run.error["message"]
    assert len(server.requests) == 3


async def test_the_cache_answers_an_identical_request(migrated_url: str) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        flow = Workflow("cached", inputs={"question": "str"}, output="answer")
        config = LlmConfig(
            model="fake-1",
            base_url=server.base_url,
            api_key_env=None,
            prompt="{question}",
            cache_ttl=3600,
        )
        flow.llm("answer", config, inputs=["question"])
        first = await engine.run(flow, {"question": "same"})
        second = await engine.run(flow, {"question": "same"})
        third = await engine.run(flow, {"question": "other"})
        log = await _events(engine, second.id)
        [usage] = await engine.store.llm_usage(workflow="cached")

    assert first.output == second.output == "You said: same"
    assert third.output == "You said: other"
    assert len(server.requests) == 2
    assert [e.text for e in log if isinstance(e, TokenEvent)] == ["You said: same"]
    assert (usage.calls, usage.ok, usage.cached) == (3, 2, 1)


async def test_the_breaker_of_an_endpoint_opens_for_every_node(migrated_url: str) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        server.faults.extend([Fault(status=500)] * 2)
        flow = ask_flow(server, breaker_failures=2, breaker_reset_after=3600)
        run = await engine.run(flow, {"question": "hi", "user": "jo"})
        other = await engine.run(ask_flow(server), {"question": "hi", "user": "ka"})
        breaker = await engine.store.get_breaker(f"llm {server.base_url}")
        log = await _events(engine, run.id)

    assert run.status == other.status == RunStatus.FAILED
    assert run.error is not None and run.error["type"] == "flowstore.errors.CircuitOpen"
    assert len(server.requests) == 2  # the third attempt, and the other run, called nobody
    assert breaker is not None and breaker.state == "open"
    moves = [e.payload for e in log if isinstance(e, CustomEvent) and e.name == "breaker"]
    assert moves == [{"breaker": f"llm {server.base_url}", "from": "closed", "to": "open"}]


async def test_a_refused_request_does_not_count_against_the_breaker(migrated_url: str) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        flow = ask_flow(server, breaker_failures=1, breaker_reset_after=3600)
        server.faults.extend([Fault(status=401)] * 3)
        refused = [
            await engine.run(flow, {"question": "hi", "user": user}) for user in ("jo", "ka", "lu")
        ]
        breaker = await engine.store.get_breaker(f"llm {server.base_url}")
        answered = await engine.run(flow, {"question": "hi", "user": "mo"})

    # A breaker of one failure: a single counted 401 would have opened it for the next runs.
    assert [run.error["type"] for run in refused if run.error] == [
        "flowstore.errors.LlmRequestRejected"
    ] * 3
    assert breaker is None or (breaker.state, breaker.failure_count) == ("closed", 0)
    assert answered.status == RunStatus.SUCCEEDED
    assert len(server.requests) == 4


async def test_the_api_key_is_read_from_the_environment_and_never_stored(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-4f1d9a2b7c"
    monkeypatch.setenv("FAKE_LLM_KEY", secret)
    async with FakeChatServer() as server, Engine(sqlite_url, workers=0) as engine:
        run = await engine.run(
            ask_flow(server, api_key_env="FAKE_LLM_KEY"), {"question": "hi", "user": "li"}
        )
        monkeypatch.delenv("FAKE_LLM_KEY")
        missing = await engine.run(
            ask_flow(server, api_key_env="FAKE_LLM_KEY"), {"question": "hi", "user": "li"}
        )

    assert run.status == RunStatus.SUCCEEDED and server.api_keys == [secret]
    assert missing.status == RunStatus.FAILED and missing.error is not None
    assert "$FAKE_LLM_KEY, which is not set" in missing.error["message"]
    database = Path(sqlite_url.split("///", 1)[1])
    stored = b"".join(path.read_bytes() for path in database.parent.glob(database.name + "*"))
    assert secret.encode() not in stored


async def test_a_dsl_llm_node_compiles_and_points_at_its_mistakes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "name: dsl\ninputs: {question: str}\nnodes:\n"
        "  - name: answer\n    type: llm\n    inputs: [question]\n"
        "    config: {model: m, base_url: 'http://127.0.0.1:9/v1', prompt: 'Q: {question}'}\n"
    )
    graph = Workflow.load(good).compile()
    assert graph.nodes["answer"].spec.retry is not None

    def problems(config: str, inputs: str = "[question]") -> list[tuple[Any, ...]]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(
            "name: dsl\ninputs: {question: str}\nnodes:\n"
            f"  - name: answer\n    type: llm\n    inputs: {inputs}\n    config: {config}\n"
        )
        with pytest.raises(DefinitionError) as raised:
            Workflow.load(bad).compile()
        return [(p.node, p.field, p.line, p.message) for p in raised.value.problems]

    [(node, field, line, message)] = problems("{model: m, prompt: '{question.__class__}'}")
    assert (node, field, line) == ("answer", "config.prompt", 7)
    assert "not a plain name" in message
    unbound, unused = problems("{model: m, prompt: '{topic}'}")
    assert unbound[:2] == ("answer", "inputs") and "parameter 'topic'" in unbound[3]
    assert unused[:2] == ("answer", "inputs.question") and "no parameter 'question'" in unused[3]
    [(node, field, _, message)] = problems("{model: m, prompt: x, output: 'json:Nothing'}")
    assert (node, field) == ("answer", "config.output") and "cannot be imported" in message
    [(_, field, _, message)] = problems("{model: m}")
    assert field == "config" and "prompt, a thread, or both" in message


async def test_the_endpoint_can_be_a_resource(migrated_url: str) -> None:
    async with FakeChatServer() as server:
        flow = Workflow("by_resource", inputs={"question": "str"}, resources=["model"])
        config = LlmConfig(model="fake-1", endpoint="model", prompt="{question}")
        flow.llm("answer", config, inputs=["question", "model"])
        endpoint = LlmEndpoint(server.base_url, api_key="sk-resource")
        async with Engine(migrated_url, workers=0, resources={"model": endpoint}) as engine:
            run = await engine.run(flow, {"question": "hi"})

    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "You said: hi")
    assert server.api_keys == ["sk-resource"]
    assert "sk-resource" not in repr(endpoint)


async def test_many_runs_at_once_through_faults_each_store_their_turn_and_calls_once(
    migrated_url: str,
) -> None:
    """Forty runs on eight workers against one endpoint that fails one request in three (429,
    500, a cut, a garbled chunk, in turn): every run succeeds, every request the endpoint saw
    is one row, and every thread holds its turn once."""
    faults = list(FAULTS.values())
    async with FakeChatServer(token_delay=0.001) as server:
        planned = [fault for index in range(40) for fault in (faults[index % 4], Fault(), Fault())]
        server.faults.extend(planned)
        # Faults go to whichever request comes next: a run may meet several in a row.
        retry = Retry(attempts=10, backoff=0.01, jitter=False)
        flow = ask_flow(server, retry, breaker_failures=0)
        async with Engine(migrated_url, workflows=[flow], workers=8) as engine:
            ids = [
                await engine.submit(flow, {"question": f"q {n}", "user": f"u{n}"})
                for n in range(40)
            ]
            async with asyncio.timeout(120):
                runs = [await engine.wait(run_id) for run_id in ids]
            calls = await engine.store.list_llm_calls(workflow="ask", limit=10_000)
            threads = [await engine.memory.thread(f"chat-u{n}").messages() for n in range(40)]

    assert [(run.status, run.error) for run in runs] == [(RunStatus.SUCCEEDED, None)] * 40
    assert [run.output for run in runs] == [f"You said: q {n}" for n in range(40)]
    assert len(calls) == len(server.requests)  # each call once, none lost
    met = planned[: len(server.requests)]  # the faults the requests made met
    assert sum(call.outcome == "failed" for call in calls) == sum(f != Fault() for f in met) > 10
    by_run: dict[str | None, list[str]] = {}
    for call in calls:
        by_run.setdefault(call.run_id, []).append(call.outcome)
    assert all(outcomes[-1] == "ok" and outcomes.count("ok") == 1 for outcomes in by_run.values())
    assert [[(m.role, m.content) for m in thread] for thread in threads] == [
        [("user", f"q {n}"), ("assistant", f"You said: q {n}")] for n in range(40)
    ]


async def test_every_commit_of_an_llm_run_failing_in_turn_keeps_the_turn_once(
    migrated_url: str,
) -> None:
    """The database refuses one commit of the run (its lock held past the busy timeout), each
    in turn: the run is taken up again and ends well, its thread holds its turn once, and its
    calls are rows at most once each: a call whose row was refused with its commit is not
    stored, and a node whose success was refused calls again, a row of its own."""
    async with FakeChatServer() as server:
        flow = ask_flow(server)
        async with Engine(migrated_url, workers=0) as engine:
            counter = FaultyStore(engine.store, "record_transitions", lambda _: False)
            await engine.run(flow, {"question": "clean", "user": "clean"})
        commits = counter.count
        assert commits >= 3
        for at in range(1, commits + 1):
            user = f"at{at}"
            requests = len(server.requests)
            async with Engine(migrated_url, workers=0) as engine:
                refused = StoreUnavailable("recording transitions: database is locked")
                FaultyStore(engine.store, "record_transitions", {at}, refused)
                run = await engine.run(flow, {"question": f"q {at}", "user": user})
            async with Engine(migrated_url, workers=0) as reader:
                thread = await reader.memory.thread(f"chat-{user}").messages()
                calls = await reader.store.list_llm_calls(run_id=run.id)
                ended = await reader.get_run(run.id)
            assert (ended.status, ended.output) == (RunStatus.SUCCEEDED, f"You said: q {at}")
            assert [(m.role, m.content) for m in thread] == [
                ("user", f"q {at}"),
                ("assistant", f"You said: q {at}"),
            ], at
            made = len(server.requests) - requests
            assert 1 <= len(calls) <= made, (at, calls, made)
            assert calls[-1].outcome == "ok" and len({call.seq for call in calls}) == len(calls)


LOOKUPS: list[str] = []


def lookup_flow() -> Workflow:
    flow = Workflow("lookup", description="The status of an order.", output="status")

    @flow.node
    async def status(order: str) -> dict[str, str]:
        LOOKUPS.append(order)
        return {"order": order, "status": "shipped"}

    return flow


def looks_up(request: dict[str, Any]) -> FakeReply:
    results = [m["content"] for m in request["messages"] if m["role"] == "tool"]
    if results:
        return FakeReply(f"Order: {' | '.join(results)}")
    return FakeReply(tool_calls=(("lookup", {"order": "A1"}), ("lookup", {"order": 7})))


async def test_a_workflow_tool_is_a_child_run_taken_up_again_not_run_twice(
    migrated_url: str,
) -> None:
    LOOKUPS.clear()
    async with FakeChatServer(looks_up) as server:
        lookup = lookup_flow()
        flow = ask_flow(server, workflow_tools=["lookup"])
        server.faults.extend([Fault(), Fault(status=500)])  # the answer fails once
        async with Engine(migrated_url, workers=0, workflows=[flow, lookup]) as engine:
            run = await engine.run(flow, {"question": "where is A1?", "user": "ny"})
            log = await _events(engine, run.id)
            children = await engine.list_runs(workflow="lookup")

    assert run.status == RunStatus.SUCCEEDED
    assert run.output.startswith('Order: {"order": "A1", "status": "shipped"}')
    tool = server.requests[0]["tools"][0]["function"]
    assert (tool["name"], tool["description"]) == ("lookup", "The status of an order.")
    assert tool["parameters"]["properties"]["order"]["type"] == "string"
    # Attempt 1 ran the tool; attempt 2 (after the 500) took up the same child run.
    assert LOOKUPS == ["A1"]
    assert [(c.parent_run_id, c.status) for c in children] == [(run.id, RunStatus.SUCCEEDED)]
    recorded = [e for e in log if isinstance(e, CustomEvent) and e.name == "tool_call"]
    assert [(e.attempt, e.payload["arguments"]) for e in recorded] == [
        (1, {"order": "A1"}),
        (1, {"order": 7}),
        (2, {"order": "A1"}),
        (2, {"order": 7}),
    ]
    assert recorded[0].payload["result"] == recorded[2].payload["result"]
    assert "invalid inputs" in recorded[1].payload["error"]  # told to the model, not raised


async def test_a_workflow_tool_the_engine_does_not_know_is_a_mistake(migrated_url: str) -> None:
    async with FakeChatServer(looks_up) as server, Engine(migrated_url, workers=0) as engine:
        run = await engine.run(
            ask_flow(server, workflow_tools=["lookup"]), {"question": "?", "user": "ol"}
        )
    assert run.status == RunStatus.FAILED and run.error is not None
    assert run.error["type"] == "flowstore.errors.ConfigurationError"
    assert "workflow 'lookup' is not registered with this engine" in run.error["message"]
    assert server.requests == []  # not retried, nothing called


@pytest.mark.parametrize("keep_stats", [True, False])
async def test_retention_keeps_model_usage_when_asked(migrated_url: str, keep_stats: bool) -> None:
    async with FakeChatServer() as server, Engine(migrated_url, workers=0) as engine:
        run = await engine.run(ask_flow(server), {"question": "hi", "user": "qu"})
        deleted = await engine.store.delete_ended_runs(
            ended_before=datetime.now(UTC) + timedelta(seconds=1),
            statuses=[RunStatus.SUCCEEDED],
            limit=10,
            keep_stats=keep_stats,
        )
        calls = await engine.store.list_llm_calls(workflow="ask")
        usage = await engine.store.llm_usage(workflow="ask")

    assert deleted == 1 and run.status == RunStatus.SUCCEEDED
    if keep_stats:
        assert [(call.run_id, call.outcome) for call in calls] == [(None, "ok")]
        assert [row.calls for row in usage] == [1]
    else:
        assert calls == [] and usage == []
