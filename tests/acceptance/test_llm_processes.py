"""The `llm` node in processes of its own: `flowstore stats` sums its calls; and its process
killed with SIGKILL in the middle of a streamed reply, another process resumes the run. The
stream and the memory stay consistent: the dead attempt's tokens stand before a `recovered`
event that names that attempt, the next attempt streams the whole reply, the thread holds the
turn once, and only finished calls are rows."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from typing import Any

from flowstore.events import NodeEvent, TokenEvent
from flowstore.llm.testing import FakeChatServer, Fault
from flowstore.runtime.engine import Engine
from tests.support.cli import run_flowstore, start_flowstore

REPLY = " ".join(f"word{number}" for number in range(30))


def _dumped(events: list[Any]) -> list[dict[str, Any]]:
    return [event.model_dump(exclude={"at"}) for event in events]


async def test_an_llm_node_killed_mid_stream_resumes_elsewhere_consistently(
    migrated_url: str, reaper: list[subprocess.Popen[str]]
) -> None:
    async with FakeChatServer(lambda request: REPLY, token_delay=0.05) as server:
        env = {"FLOWSTORE_DATABASE_URL": migrated_url, "FLOWSTORE_TEST_LLM_URL": server.base_url}
        question = json.dumps({"question": "tell me", "user": "ana"})
        first = start_flowstore("run", "tests.support.llm_flow:flow", "--input", question, env=env)
        reaper.append(first)
        assert first.stderr is not None
        run_id = (await asyncio.to_thread(first.stderr.readline)).split()[1]

        followed: list[Any] = []
        resumed = None
        async with Engine(migrated_url, workers=0) as engine:
            async with asyncio.timeout(120):
                async for event in engine.events(run_id):  # executed by other processes
                    followed.append(event)
                    tokens = [e for e in followed if isinstance(e, TokenEvent)]
                    if resumed is None and len(tokens) == 3:
                        first.send_signal(signal.SIGKILL)
                        await asyncio.to_thread(first.communicate)
                        resumed = start_flowstore(
                            "resume", run_id, "tests.support.llm_flow:flow", env=env
                        )
                        reaper.append(resumed)
            assert resumed is not None, "the reply never streamed"
            stdout, stderr = await asyncio.to_thread(resumed.communicate, timeout=120)
            assert resumed.returncode == 0, stderr
            log = [event async for event in engine.events(run_id)]
            thread = await engine.memory.thread("chat-ana").messages()
            calls = await engine.store.list_llm_calls(run_id=run_id)

    assert json.loads(stdout) == REPLY
    assert _dumped(followed) == _dumped(log)  # the reader saw the whole log, once, in order
    assert [event.seq for event in log] == list(range(1, len(log) + 1))

    [recovered] = [e for e in log if isinstance(e, NodeEvent) and e.status == "recovered"]
    dead = [e for e in log if isinstance(e, TokenEvent) and e.attempt == recovered.attempt]
    assert recovered.attempt == 1 and 3 <= len(dead) < 30
    assert all(token.seq < recovered.seq for token in dead)
    live = [e for e in log if isinstance(e, TokenEvent) and e.attempt != recovered.attempt]
    assert {token.attempt for token in live} == {2}
    assert "".join(token.text for token in live) == REPLY
    assert all(token.seq > recovered.seq for token in live)

    assert [(m.role, m.content) for m in thread] == [("user", "tell me"), ("assistant", REPLY)]
    assert [(call.outcome, call.attempt) for call in calls] == [("ok", 2)]
    assert len(server.requests) == 2


async def test_flowstore_stats_sums_the_model_calls(migrated_url: str) -> None:
    async with FakeChatServer() as server:
        env = {"FLOWSTORE_DATABASE_URL": migrated_url, "FLOWSTORE_TEST_LLM_URL": server.base_url}
        server.faults.append(Fault(status=500))
        for question in ("one", "two"):
            given = json.dumps({"question": question, "user": "bo"})
            args = ("run", "tests.support.llm_flow:flow", "--input", given)
            await asyncio.to_thread(run_flowstore, *args, env=env)
        shown = await asyncio.to_thread(run_flowstore, "stats", env=env)
        data = await asyncio.to_thread(run_flowstore, "stats", "--json", env=env)

    header, row = shown.stdout.splitlines()[-2:]
    assert header.split()[:9] == [
        "workflow", "node", "model", "calls", "failed", "cached", "prompt", "completion", "cost"
    ]  # fmt: skip
    assert row.split()[:6] == ["llm_chat", "answer", "fake-1", "3", "1", "0"]
    [usage] = json.loads(data.stdout)["llm"]
    assert (usage["calls"], usage["ok"], usage["failed"]) == (3, 2, 1)
    assert usage["completion_tokens"] == 3 + 3  # "You said: one", "You said: two"
