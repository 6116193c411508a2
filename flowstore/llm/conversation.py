"""One execution of an `llm` node: the prompt, the calls, the tool rounds and the repairs.

Each call streams its text into the run's events as tokens and is recorded as a row of
`flowstore_llm_calls` (ok, cached or failed) with an `llm_call` event after its tokens, so a
reader can tell the calls of one execution apart. Memory writes (the prompt, tool rounds and
the reply) are staged and committed with the node's success: a thread holds each turn once,
however many attempts the node took.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from flowstore.definition.spec import Breaker
from flowstore.errors import (
    ConfigurationError,
    LlmCallFailed,
    LlmOutputInvalid,
    LlmRequestRejected,
)
from flowstore.llm.client import Reply, ToolCall, stream_chat
from flowstore.llm.node import LlmConfig, Template, import_path
from flowstore.llm.tools import Tools
from flowstore.runtime.context import NodeContext, emit_engine_event
from flowstore.runtime.policies.breaker import with_breaker
from flowstore.store import serde

__all__ = ["Conversation"]

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_OUTPUT_TOOL = "final_answer"
_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


class Conversation:
    """The messages of one execution, and the calls that extend them."""

    def __init__(self, config: LlmConfig, ctx: NodeContext, values: dict[str, Any]) -> None:
        self.config = config
        self.ctx = ctx
        self.values = values
        self.messages: list[dict[str, Any]] = []
        self.tools = Tools(config.tools, config.workflow_tools, ctx)
        self.output: type[BaseModel] | None = (
            None if config.output is None else import_path(config.output, "output model")
        )
        self.base_url, self.api_key = self._endpoint()

    def _endpoint(self) -> tuple[str, str | None]:
        config = self.config
        if config.endpoint is not None:
            given = self.values[config.endpoint]
            base_url = getattr(given, "base_url", None)
            if not isinstance(base_url, str):
                raise ConfigurationError(
                    f"node {self.ctx.node!r}: the resource {config.endpoint!r} has no base_url; "
                    "give an object with base_url and api_key (flowstore.LlmEndpoint)"
                )
            return base_url, getattr(given, "api_key", None)
        api_key = None
        if config.api_key_env is not None:
            api_key = os.environ.get(config.api_key_env)
            if not api_key:
                raise ConfigurationError(
                    f"node {self.ctx.node!r} reads its API key from ${config.api_key_env}, "
                    "which is not set (set api_key_env: null for an endpoint without a key)"
                )
        return config.base_url or _DEFAULT_BASE_URL, api_key

    async def run(self) -> Any:
        """Call the model until it answers (tool rounds and repairs included); the answer."""
        config = self.config
        if config.system is not None:
            self.messages.append({"role": "system", "content": self._render(config.system)})
        thread = None
        if config.thread is not None:
            thread = self.ctx.memory.thread(self._render(config.thread))
            history = await thread.window(max_tokens=config.history_tokens)
            self.messages += _openai_messages(history)
        if config.prompt is not None:
            prompt = self._render(config.prompt)
            self.messages.append({"role": "user", "content": prompt})
            if thread is not None:
                await thread.append("user", prompt)
        rounds = repairs = 0
        while True:
            reply = await self._call()
            answer, calls = self._answer(reply)
            if calls:
                rounds += 1
                if rounds > config.max_tool_rounds:
                    raise LlmOutputInvalid(
                        f"node {self.ctx.node!r}: the model still called tools after "
                        f"{config.max_tool_rounds} rounds (max_tool_rounds)"
                    )
                await self._tool_round(reply, calls, thread, rounds)
                continue
            if self.output is None:
                if thread is not None:
                    await thread.append("assistant", answer)
                return answer
            try:
                parsed = self.output.model_validate_json(_unfenced(answer))
            except ValidationError as error:
                repairs += 1
                if repairs > config.repair_attempts:
                    raise LlmOutputInvalid(
                        f"node {self.ctx.node!r}: the model's reply does not match "
                        f"{config.output} after {config.repair_attempts} repairs: {error}"
                    ) from error
                self._ask_repair(reply, answer, error)
                continue
            value = parsed.model_dump(mode="json")
            if thread is not None:
                await thread.append("assistant", json.dumps(value))
            return value

    def _render(self, text: str) -> str:
        return Template(text).render(self.values)

    def _answer(self, reply: Reply) -> tuple[str, list[ToolCall]]:
        """The reply's answer text, and the tool calls to run first (none once it answers)."""
        if self.output is not None and self.config.output_mode == "tool":
            for call in reply.tool_calls:
                if call.name == _OUTPUT_TOOL:
                    return call.arguments, []
        return reply.content, list(reply.tool_calls)

    def _ask_repair(self, reply: Reply, answer: str, error: ValidationError) -> None:
        problems = "; ".join(
            f"{'.'.join(map(str, item['loc'])) or 'the reply'}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        said = {"role": "assistant", "content": answer}
        if reply.tool_calls and self.config.output_mode == "tool":
            said = _assistant_calls(reply)
            self.messages.append(said)
            for call in reply.tool_calls:
                self.messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": f"invalid: {problems}"}
                )
            return
        self.messages.append(said)
        self.messages.append(
            {
                "role": "user",
                "content": "Your reply does not match the required JSON schema "
                f"({problems}). Reply again with only the corrected JSON.",
            }
        )

    async def _tool_round(
        self, reply: Reply, calls: list[ToolCall], thread: Any, round_number: int
    ) -> None:
        said = _assistant_calls(reply)
        self.messages.append(said)
        if thread is not None:
            metadata = {"tool_calls": said["tool_calls"]}
            await thread.append("assistant", reply.content, metadata=metadata)
        for index, call in enumerate(calls):
            result, record = await self.tools.run(call, f"{round_number}/{index}")
            await emit_engine_event(self.ctx, "tool_call", record)
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
            if thread is not None:
                metadata = {"tool_call_id": call.id, "name": call.name}
                await thread.append("tool", result, metadata=metadata)

    def _body(self) -> dict[str, Any]:
        config = self.config
        body: dict[str, Any] = {"model": config.model, "messages": self.messages}
        if config.temperature is not None:
            body["temperature"] = config.temperature
        if config.max_tokens is not None:
            body["max_tokens"] = config.max_tokens
        tools = self.tools.schemas()
        if self.output is not None:
            schema = self.output.model_json_schema()
            if config.output_mode == "json_schema":
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": self.output.__name__, "schema": schema},
                }
            else:
                described = self.output.__doc__ or f"Give the answer as {self.output.__name__}."
                tools.append(_function(_OUTPUT_TOOL, described.strip(), schema))
                if len(tools) == 1:
                    body["tool_choice"] = {"type": "function", "function": {"name": _OUTPUT_TOOL}}
                else:
                    body["tool_choice"] = "required"
        if tools:
            body["tools"] = tools
        return {**body, **config.extra}

    async def _call(self) -> Reply:
        """One call: from the cache, or streamed through the endpoint's breaker."""
        body = self._body()
        key = None
        if self.config.cache_ttl is not None:
            key = self._cache_key(body)
            cached = await self._cached(key)
            if cached is not None:
                return cached
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        if self.config.breaker_failures == 0:
            reply = await self._stream(streamed)
        else:
            breaker = Breaker(
                name=f"llm {self.base_url}",
                failure_threshold=self.config.breaker_failures,
                reset_after=self.config.breaker_reset_after,
            )
            store = self.ctx.run.store
            assert store is not None
            # A refused request (a 4xx) is the endpoint answering: it does not count against it.
            reply = await with_breaker(
                breaker,
                store,
                lambda: self._stream(streamed),
                moved=self._breaker_moved,
                ignore=(LlmRequestRejected,),
            )
        if key is not None:
            await self._keep(key, reply)
        return reply

    async def _stream(self, body: dict[str, Any]) -> Reply:
        reply = Reply()
        ctx = self.ctx
        stream = stream_chat(
            self.base_url,
            self.api_key,
            body,
            read_timeout=self.config.request_timeout,
            reply=reply,
        )
        try:
            # Closed on every way out (a timeout, a cancellation): the connection goes back.
            async with contextlib.aclosing(stream):
                async for text in stream:
                    await ctx.emit_token(text)
        except (LlmCallFailed, LlmRequestRejected) as error:
            await self._record(reply, "failed", error=str(error))
            raise
        await self._record(reply, "ok")
        return reply

    async def _record(self, reply: Reply, outcome: str, *, error: str | None = None) -> None:
        now = time.perf_counter()
        first = reply.first_token_at
        await self.ctx.record_model_call(
            endpoint=self.base_url,
            model=self.config.model,
            outcome=outcome,
            latency_ms=(now - reply.started) * 1000 if reply.started else 0.0,
            status_code=reply.status_code,
            finish_reason=reply.finish_reason,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            cost=self.config.price_of(reply.prompt_tokens, reply.completion_tokens),
            first_token_ms=None if first is None else (first - reply.started) * 1000,
            error=error,
        )

    async def _breaker_moved(self, name: str, before: str, after: str) -> None:
        payload = {"breaker": name, "from": before, "to": after}
        await emit_engine_event(self.ctx, "breaker", payload)

    def _cache_key(self, body: dict[str, Any]) -> str:
        canonical = json.dumps({"endpoint": self.base_url, "body": body}, sort_keys=True)
        return "llm:" + hashlib.sha256(canonical.encode()).hexdigest()

    async def _cached(self, key: str) -> Reply | None:
        store = self.ctx.run.store
        assert store is not None
        entry = await store.get_cached(key)
        if entry is None:
            return None
        sealer = self.ctx.run.sealer
        value = entry.value if sealer is None else sealer.open(serde.plain(entry.value))
        reply = Reply(
            content=value["content"],
            tool_calls=[ToolCall(*call) for call in value["tool_calls"]],
            finish_reason=value["finish_reason"],
        )
        if reply.content:
            await self.ctx.emit_token(reply.content)
        await self.ctx.record_model_call(
            endpoint=self.base_url, model=self.config.model, outcome="cached", latency_ms=0.0
        )
        return reply

    async def _keep(self, key: str, reply: Reply) -> None:
        store = self.ctx.run.store
        assert store is not None and self.config.cache_ttl is not None
        value: Any = {
            "content": reply.content,
            "tool_calls": [[call.id, call.name, call.arguments] for call in reply.tool_calls],
            "finish_reason": reply.finish_reason,
        }
        sealer = self.ctx.run.sealer
        await store.put_cached(
            key,
            workflow=self.ctx.run.workflow,
            node=self.ctx.node,
            value=value if sealer is None else sealer.seal(value),
            ttl_seconds=self.config.cache_ttl,
        )


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": parameters},
    }


def _assistant_calls(reply: Reply) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": reply.content or None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ],
    }


def _openai_messages(history: list[Any]) -> list[dict[str, Any]]:
    """A thread's messages as chat messages: a tool result follows the call that asked for
    it (one whose call the window left out is dropped), a summary is a system message."""
    messages: list[dict[str, Any]] = []
    asked: set[str] = set()
    for message in history:
        metadata = message.metadata if isinstance(message.metadata, dict) else {}
        content = (
            message.content if isinstance(message.content, str) else json.dumps(message.content)
        )
        if message.role == "tool":
            call_id = metadata.get("tool_call_id")
            if call_id in asked:
                messages.append({"role": "tool", "tool_call_id": call_id, "content": content})
            continue
        if message.role == "assistant" and metadata.get("tool_calls"):
            asked.update(call["id"] for call in metadata["tool_calls"])
            calls = metadata["tool_calls"]
            messages.append({"role": "assistant", "content": content or None, "tool_calls": calls})
            continue
        role = message.role if message.role in ("user", "assistant", "system") else "system"
        messages.append({"role": role, "content": content})
    return messages


def _unfenced(text: str) -> str:
    """JSON as a model often wraps it, in a Markdown code fence, unwrapped."""
    fenced = _FENCE.match(text)
    return fenced.group(1) if fenced else text
