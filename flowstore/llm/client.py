"""One streamed call to an OpenAI-compatible chat-completions endpoint, over httpx.

`stream_chat` posts a request with `stream: true` and yields the reply as it comes: text
deltas, then one `Reply` with the whole message, the tool calls the model asked for, why it
stopped and the usage the endpoint reported. What goes wrong becomes one of flowstore's
errors, so the node's policies can tell what to retry:

- `LlmCallFailed` (retried): no connection, a timeout, HTTP 408, 409, 429 or 5xx (with the
  `Retry-After` it gave, in seconds), a stream cut before its end, a chunk that is not the
  JSON of a chat-completion chunk;
- `LlmRequestRejected` (never retried): any other HTTP 4xx, a mistake of the request or of
  its key.

One `httpx.AsyncClient` per endpoint and event loop keeps connections open between calls.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
import weakref
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from flowstore.errors import LlmCallFailed, LlmRequestRejected

__all__ = ["Reply", "ToolCall", "stream_chat"]

_RETRIED_STATUS = frozenset({408, 409, 429})
_SHOWN = 300  # characters of a response body or chunk quoted in an error


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for: its id, the tool's name and its JSON arguments."""

    id: str
    name: str
    arguments: str


@dataclass(slots=True)
class Reply:
    """A whole reply: its text, its tool calls, why it stopped, and what the endpoint said
    it used (None for what it did not say), with when it started and its first token came."""

    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    status_code: int | None = None
    started: float = 0.0
    first_token_at: float | None = None


_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, httpx.AsyncClient]] = (
    weakref.WeakKeyDictionary()
)


def _client(base_url: str, read_timeout: float) -> httpx.AsyncClient:
    """The pooled client of `base_url` on this event loop (made when first asked for)."""
    clients = _CLIENTS.setdefault(asyncio.get_running_loop(), {})
    key = f"{base_url}|{read_timeout}"
    client = clients.get(key)
    if client is None or client.is_closed:
        timeout = httpx.Timeout(read_timeout, connect=min(read_timeout, 10.0))
        client = clients[key] = httpx.AsyncClient(base_url=base_url, timeout=timeout)
    return client


async def stream_chat(
    base_url: str,
    api_key: str | None,
    body: Mapping[str, Any],
    *,
    read_timeout: float,
    reply: Reply,
) -> AsyncGenerator[str, None]:
    """Post `body` to `{base_url}/chat/completions`, streamed; yield each text delta, and
    fill `reply` as the stream goes (complete once the iteration ends without an error).

    Raises:
        LlmCallFailed: The call failed in a way worth trying again.
        LlmRequestRejected: The endpoint refused the request (HTTP 4xx but 408/409/429).
    """
    headers = {"Accept": "text/event-stream"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    client = _client(base_url.rstrip("/") + "/", read_timeout)
    reply.started = time.perf_counter()
    done = False
    calls: dict[int, dict[str, str]] = {}
    try:
        async with client.stream("POST", "chat/completions", json=body, headers=headers) as got:
            reply.status_code = got.status_code
            if got.status_code >= 400:
                await _refused(got)
            data: list[str] = []
            async for line in got.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                    continue
                if line or not data:
                    continue  # a comment, an event name, or a blank line between events
                payload, data = "\n".join(data), []
                if payload == "[DONE]":
                    done = True
                    break
                for text in _take_chunk(payload, reply, calls):
                    if reply.first_token_at is None:
                        reply.first_token_at = time.perf_counter()
                    yield text
    except httpx.TimeoutException as error:
        raise LlmCallFailed(f"the model endpoint {base_url} timed out: {error!r}") from error
    except httpx.RemoteProtocolError as error:
        if reply.status_code is None:
            raise LlmCallFailed(f"the model endpoint {base_url} broke off: {error!r}") from error
        raise LlmCallFailed(
            f"the stream of the model endpoint {base_url} was cut before its end, after "
            f"{len(reply.content)} characters ({error})"
        ) from error
    except httpx.HTTPError as error:
        raise LlmCallFailed(
            f"the connection to the model endpoint {base_url} failed: {error!r}"
        ) from error
    reply.tool_calls = [
        ToolCall(call.get("id", ""), call.get("name", ""), call.get("arguments", ""))
        for _, call in sorted(calls.items())
    ]
    if not done and reply.finish_reason is None:
        raise LlmCallFailed(
            f"the stream of the model endpoint {base_url} was cut before its end, after "
            f"{len(reply.content)} characters"
        )


def _take_chunk(payload: str, reply: Reply, calls: dict[int, dict[str, str]]) -> list[str]:
    """Fold one chunk into `reply`; return its text deltas."""
    try:
        chunk = json.loads(payload)
        choices = chunk.get("choices") or []
        texts = []
        for choice in choices:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if not isinstance(text, str):
                    raise TypeError("delta.content is not a string")
                reply.content += text
                texts.append(text)
            for call in delta.get("tool_calls") or ():
                held = calls.setdefault(int(call.get("index", 0)), {})
                if call.get("id"):
                    held["id"] = str(call["id"])
                function = call.get("function") or {}
                if function.get("name"):
                    held["name"] = held.get("name", "") + str(function["name"])
                if function.get("arguments"):
                    held["arguments"] = held.get("arguments", "") + str(function["arguments"])
            if choice.get("finish_reason"):
                reply.finish_reason = str(choice["finish_reason"])
        usage = chunk.get("usage")
        if usage:
            reply.prompt_tokens = _count(usage.get("prompt_tokens"))
            reply.completion_tokens = _count(usage.get("completion_tokens"))
        return texts
    except (ValueError, TypeError, AttributeError) as error:
        raise LlmCallFailed(
            f"the model endpoint sent a chunk that is not a chat-completion chunk ({error}): "
            f"{payload[:_SHOWN]!r}"
        ) from error


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


async def _refused(response: httpx.Response) -> None:
    body = (await response.aread()).decode(errors="replace")
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body
    status = response.status_code
    said = f"the model endpoint answered HTTP {status}: {str(message)[:_SHOWN]}"
    if status in _RETRIED_STATUS or status >= 500:
        raise LlmCallFailed(said, status_code=status, retry_after=_retry_after(response.headers))
    raise LlmRequestRejected(said, status_code=status)


def _retry_after(headers: httpx.Headers) -> float | None:
    """`Retry-After` in seconds: given as seconds, or as an HTTP date."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
