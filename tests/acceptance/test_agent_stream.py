"""The example agent, killed with SIGKILL in the middle of a streamed reply and resumed.

A reader in this process follows the run while another process executes it, through the kill
and the resume in a third process: it receives every committed event once, in order. After
the run, the conversation holds each turn exactly once, and the log read from sequence 0 has
no gaps and no duplicated tokens of committed node executions.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections import defaultdict
from typing import Any

from flowstore.events import NodeEvent, RunEvent, TokenEvent
from flowstore.runtime.engine import Engine
from tests.support.cli import start_flowstore

QUESTION = "What is the weather in Oslo?"
ANSWER = "The weather in Oslo is -2 C and snowing right now, according to the forecast."


def _dumped(events: list[Any]) -> list[dict[str, Any]]:
    return [event.model_dump(exclude={"at"}) for event in events]


async def test_an_agent_killed_mid_stream_keeps_every_turn_once(
    migrated_url: str, reaper: list[subprocess.Popen[str]]
) -> None:
    env = {"FLOWSTORE_DATABASE_URL": migrated_url, "FLOWSTORE_AGENT_TOKEN_SECONDS": "0.05"}
    question = json.dumps({"conversation": "c1", "question": QUESTION})
    first = start_flowstore("run", "examples.agent:flow", "--input", question, env=env)
    reaper.append(first)
    assert first.stderr is not None
    run_id = (await asyncio.to_thread(first.stderr.readline)).split()[1]

    followed = []
    resumed = None
    async with Engine(migrated_url, workers=0) as engine:
        async with asyncio.timeout(120):
            async for event in engine.events(run_id):  # the run executes in another process
                followed.append(event)
                answering = [e for e in followed if isinstance(e, TokenEvent) and e.key == "i1"]
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

    # The reader elsewhere received every event once and in order: the whole log.
    assert [event.seq for event in log] == list(range(1, len(log) + 1))
    assert _dumped(followed) == _dumped(log)
    last = log[-1]
    assert isinstance(last, RunEvent) and (last.status, last.output) == ("succeeded", ANSWER)

    # Each turn once, though the answer was being written when the process died.
    assert [(m.role, m.content) for m in thread] == [
        ("user", QUESTION),
        ("assistant", "CALL weather(Oslo)"),
        ("tool", "weather(Oslo) = -2 C and snowing"),
        ("assistant", ANSWER),
    ]

    # Tokens: every committed execution's tokens once, in order, making up its output; the
    # attempt that died left only the tokens it streamed, before its `recovered` event.
    tokens: dict[tuple[str, str, int | None], list[TokenEvent]] = defaultdict(list)
    for event in log:
        if isinstance(event, TokenEvent):
            tokens[(event.node, event.key, event.attempt)].append(event)
    committed = {}
    attempt_of: dict[tuple[str, str], int | None] = {}
    for event in log:
        if isinstance(event, NodeEvent) and event.status == "running":
            attempt_of[(event.node, event.key)] = event.attempt
        if isinstance(event, NodeEvent) and event.status == "succeeded" and event.node == "model":
            committed[(event.node, event.key)] = event.output
    assert committed == {("model", ""): "CALL weather(Oslo)", ("model", "i1"): ANSWER}
    for (node, key), output in committed.items():
        mine = tokens.pop((node, key, attempt_of[(node, key)]))
        assert "".join(token.text for token in mine) == output
    [(died, partial)] = tokens.items()  # the attempt that was killed, and nothing else
    assert died == ("model", "i1", attempt_of[("model", "i1")] - 1)  # type: ignore[operator]
    assert 3 <= len(partial) < len(ANSWER.split())
    recovered = next(e.seq for e in log if isinstance(e, NodeEvent) and e.status == "recovered")
    assert partial[-1].seq < recovered
