"""Conversation and entity memory: written with a node's success, read by nodes and apps."""

from __future__ import annotations

import asyncio

import pytest

from flowstore import ExecutionConfig, MemoryConfig, Retry, Workflow
from flowstore.errors import InvalidValue
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine
from flowstore.store import RunStatus
from flowstore.store.records import Message


def chat_flow(config: MemoryConfig | None = None) -> Workflow:
    flow = Workflow("chat", config=ExecutionConfig(memory=config or MemoryConfig()), output="reply")

    @flow.node(retry=Retry(attempts=2, backoff=0, jitter=False))
    async def reply(user: str, text: str, ctx: NodeContext) -> str:
        thread = ctx.memory.thread(user)
        await thread.append("user", text, metadata={"attempt": ctx.attempt})
        seen = await thread.messages()
        assert seen[-1].content == text and seen[-1].id == 0  # its own write, staged
        people = ctx.memory.entities("people")
        await people.upsert(user, {"last": text, "turns": len(seen)})
        if ctx.attempt == 1:
            raise ConnectionError("model unavailable")  # the writes of this attempt vanish
        answer = f"echo: {text}"
        await thread.append("assistant", answer, tokens=3)
        me = await people.get(user)
        assert me is not None and me.attributes["last"] == text
        return answer

    return flow


async def test_a_node_writes_memory_with_its_success_and_never_before(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        first = await engine.run(chat_flow(), {"user": "ana", "text": "hi"})
        second = await engine.run(chat_flow(), {"user": "ana", "text": "and now?"})
        assert (first.status, second.status) == (RunStatus.SUCCEEDED, RunStatus.SUCCEEDED)
        messages = await engine.memory.thread("ana").messages()
        ana = await engine.memory.entities("people").get("ana")
        history = await engine.memory.entities("people").history("ana")
        log = [event async for event in engine.events(second.id)]

    assert [(m.role, m.content, m.metadata) for m in messages] == [
        ("user", "hi", {"attempt": 2}),
        ("assistant", "echo: hi", None),
        ("user", "and now?", {"attempt": 2}),
        ("assistant", "echo: and now?", None),
    ]
    assert [m.run_id for m in messages] == [first.id, first.id, second.id, second.id]
    assert all(m.node == "reply" and m.id > 0 for m in messages)
    assert [m.tokens for m in messages][1] == 3
    assert ana is not None and ana.attributes == {"last": "and now?", "turns": 3}
    assert [v.attributes["turns"] for v in history] == [1, 3]
    memory_events = [e.name for e in log if e.type == "event" and e.name in ("message", "entity")]
    assert memory_events == ["message", "entity", "message"]


async def test_a_node_that_fails_leaves_no_memory(migrated_url: str) -> None:
    flow = Workflow("forgetful")

    @flow.node
    async def note(ctx: NodeContext) -> None:
        await ctx.memory.thread("t").append("user", "lost")
        await ctx.memory.entities("e").upsert("x", {"a": 1})
        raise RuntimeError("no")

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {})
        assert run.status is RunStatus.FAILED
        assert await engine.memory.thread("t").messages() == []
        assert await engine.memory.entities("e").get("x") is None


async def test_windows_by_count_and_tokens_with_a_summary(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        thread = engine.memory.thread("w")
        for index in range(6):
            await thread.append("user", f"message {index}", tokens=10 * (index + 1))
        by_count = await thread.window(max_messages=2)
        by_tokens = await thread.window(max_tokens=115)  # 60 + 50 fit, 40 does not

        async def summarize(older: list[Message]) -> str:
            return " / ".join(str(message.content) for message in older)

        summed = await thread.window(max_messages=4, summarize=summarize)
    assert [m.content for m in by_count] == ["message 4", "message 5"]
    assert [m.content for m in by_tokens] == ["message 4", "message 5"]
    assert [m.role for m in summed] == ["summary", "user", "user", "user", "user"]
    assert summed[0].content == "message 0 / message 1"


async def test_memory_limits_from_the_workflow(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        trimmed = chat_flow(MemoryConfig(max_messages=3))
        for text in ("one", "two", "three"):
            await engine.run(trimmed, {"user": "bo", "text": text})
        kept = [m.content for m in await engine.memory.thread("bo").messages()]
        assert kept == ["echo: two", "three", "echo: three"]

        scratch = chat_flow(MemoryConfig(clear_after_run=True))
        run = await engine.run(scratch, {"user": "cy", "text": "temporary"})
        assert run.status is RunStatus.SUCCEEDED
        assert await engine.memory.thread("cy").messages() == []

        fleeting = chat_flow(MemoryConfig(message_ttl=1.5))
        await engine.run(fleeting, {"user": "di", "text": "soon gone"})
        assert len(await engine.memory.thread("di").messages()) == 2
        await asyncio.sleep(1.6)
        assert await engine.memory.thread("di").messages() == []

        small = chat_flow(MemoryConfig(max_message_bytes=10))
        run = await engine.run(small, {"user": "ed", "text": "far too long a message"})
        assert run.status is RunStatus.FAILED and run.error is not None
        assert (
            "thread 'ed' (node 'reply') is larger than memory.max_message_bytes (10)"
            in (run.error["message"])
        )
        with pytest.raises(InvalidValue, match="role"):
            await engine.memory.thread("ed").append("", "x")
