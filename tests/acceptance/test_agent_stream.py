"""The example agent, killed with SIGKILL in the middle of a streamed reply and resumed.

Its `llm` node talks to the example's stand-in model on a fake OpenAI-compatible server
started here. A reader in this process follows the run while another process executes it,
through the kill and the resume in a third process: it receives every committed event once,
in order. After the run, the conversation holds each turn exactly once (the tool call and its
result included), and the log read from sequence 0 has no gaps and no duplicated tokens of
committed node executions.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections import defaultdict
from typing import Any

from examples.agent import think
from flowstore.events import CustomEvent, NodeEvent, RunEvent, TokenEvent
from flowstore.llm.testing import FakeChatServer
from flowstore.runtime.engine import Engine
from tests.support.cli import start_flowstore

QUESTION = "What is the weather in Oslo?"
ANSWER = "The weather in Oslo is -2 C and snowing right now, according to the forecast."


def _dumped(events: list[Any]) -> list[dict[str, Any]]:
    return [event.model_dump(exclude={"at"}) for event in events]


async def test_an_agent_killed_mid_stream_keeps_every_turn_once(
    migrated_url: str, reaper: list[subprocess.Popen[str]]
) -> None:
    async with FakeChatServer(think, token_delay=0.05) as server:
        env = {"FLOWSTORE_DATABASE_URL": migrated_url, "FLOWSTORE_AGENT_LLM_URL": server.base_url}
        question = json.dumps({"conversation": "c1", "question": QUESTION})
        first = start_flowstore("run", "examples.agent:flow", "--input", question, env=env)
        reaper.append(first)
        assert first.stderr is not None
        run_id = (await asyncio.to_thread(first.stderr.readline)).split()[1]

        followed = []
        resumed = None
        async with Engine(migrated_url, workers=0) as engine:
            async with asyncio.timeout(120):
                async for event in engine.events(run_id):  # executed in another process
                    followed.append(event)
                    answering = [e for e in followed if isinstance(e, TokenEvent)]
                    if resumed is None and len(answering) == 3:  # in the middle of the answer
                        first.send_signal(signal.SIGKILL)
                        await asyncio.to_thread(first.communicate)
                        resumed = start_flowstore("resume", run_id, "examples.agent:flow", env=env)
                        reaper.append(resumed)
            assert resumed is not None, "the answer never streamed"
            stdout, stderr = await asyncio.to_thread(resumed.communicate, timeout=120)
            assert resumed.returncode == 0, stderr
            assert json.loads(stdout) == ANSWER
            log = [event async for event in engine.events(run_id)]
            thread = await engine.memory.thread("c1").messages()
            calls = await engine.store.list_llm_calls(run_id=run_id)
            user = await engine.memory.entities("users").get("c1")

    # The reader elsewhere received every event once and in order: the whole log.
    assert [event.seq for event in log] == list(range(1, len(log) + 1))
    assert _dumped(followed) == _dumped(log)
    last = log[-1]
    assert isinstance(last, RunEvent) and (last.status, last.output) == ("succeeded", ANSWER)

    # Each turn once, though the answer was being written when the process died.
    assert [(m.role, m.content) for m in thread] == [
        ("user", QUESTION),
        ("assistant", ""),
        ("tool", "-2 C and snowing"),
        ("assistant", ANSWER),
    ]
    [call] = thread[1].metadata["tool_calls"]
    assert (call["function"]["name"], json.loads(call["function"]["arguments"])) == (
        "weather",
        {"city": "Oslo"},
    )
    assert user is not None and user.attributes["last_answer"] == ANSWER

    # Tokens: the attempt that died left the tokens it streamed, before the `recovered` event
    # that names it; the next attempt streamed the whole answer.
    [recovered] = [e for e in log if isinstance(e, NodeEvent) and e.status == "recovered"]
    tokens: dict[int | None, list[TokenEvent]] = defaultdict(list)
    for event in log:
        if isinstance(event, TokenEvent):
            tokens[event.attempt].append(event)
    partial, whole = tokens.pop(recovered.attempt), tokens.pop((recovered.attempt or 0) + 1)
    assert tokens == {}
    assert 3 <= len(partial) < len(ANSWER.split())
    assert partial[-1].seq < recovered.seq < whole[0].seq
    assert "".join(token.text for token in whole) == ANSWER

    # Each finished call is one row: the dead attempt's tool call, the next attempt's two.
    assert [(c.outcome, c.attempt, c.finish_reason) for c in calls] == [
        ("ok", 1, "tool_calls"),
        ("ok", 2, "tool_calls"),
        ("ok", 2, "stop"),
    ]
    tool_calls = [e for e in log if isinstance(e, CustomEvent) and e.name == "tool_call"]
    assert [(e.attempt, e.payload["result"]) for e in tool_calls] == [
        (1, "-2 C and snowing"),
        (2, "-2 C and snowing"),
    ]
