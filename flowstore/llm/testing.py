"""A fake OpenAI-compatible chat endpoint on 127.0.0.1, for tests, examples and benchmarks.

```python
from flowstore.llm.testing import Fault, FakeChatServer

async with FakeChatServer() as server:             # replies "You said: <the last message>"
    server.faults.append(Fault(status=429, retry_after=1))   # the next request gets a 429
    ...                                            # point an `llm` node at server.base_url
    assert len(server.requests) == 2               # the bodies it was sent, in order
```

It serves `POST /v1/chat/completions` as a real endpoint streams it: server-sent events over
chunked HTTP/1.1 with keep-alive, a delta per word, a last chunk with the usage, `[DONE]`.
`respond` decides the reply from the request (a text, or tool calls); `faults` are taken one
per request, first in first out: an HTTP status (with `Retry-After`), a stream cut, garbled or
stalled after some words. Run one from a shell with
`python -m flowstore.llm.testing --port 8700 [--respond module:function]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = ["FakeChatServer", "FakeReply", "Fault", "echo"]


@dataclass(frozen=True, slots=True)
class FakeReply:
    """What the fake model answers: a text streamed word by word, or tool calls (each a
    name and its arguments)."""

    content: str = ""
    tool_calls: tuple[tuple[str, dict[str, Any]], ...] = ()


@dataclass(frozen=True, slots=True)
class Fault:
    """What goes wrong with one request.

    Attributes:
        status: Answer with this HTTP status (and an OpenAI-style error body) instead.
        retry_after: The `Retry-After` seconds sent with `status`.
        cut_after: Close the connection after this many words of the reply.
        garble_after: Send a chunk that is not JSON after this many words.
        stall_after: Send nothing for `stall_seconds` after this many words.
        stall_seconds: How long a stall lasts.
    """

    status: int | None = None
    retry_after: float | None = None
    cut_after: int | None = None
    garble_after: int | None = None
    stall_after: int | None = None
    stall_seconds: float = 3600.0


Respond = Callable[[dict[str, Any]], FakeReply | str]
"""Decides the reply to a request body."""


def echo(request: dict[str, Any]) -> FakeReply:
    """The default reply: `You said: ` and the last message's text."""
    messages = request.get("messages") or [{}]
    return FakeReply(f"You said: {messages[-1].get('content') or ''}")


@dataclass
class FakeChatServer:
    """A fake chat-completions endpoint (see the module's docstring).

    Attributes:
        respond: Decides each reply from the request body.
        token_delay: Seconds between two streamed words.
        port: The port to listen on; 0 picks a free one (see `base_url` once started).
        faults: What goes wrong with the next requests, one each.
        requests: The bodies of the requests received, in order.
        api_keys: The bearer key of each request (None without one).
    """

    respond: Respond = echo
    token_delay: float = 0.0
    port: int = 0
    faults: deque[Fault] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    api_keys: list[str | None] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        """The base URL to give an `llm` node (`http://127.0.0.1:PORT/v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        """Listen on 127.0.0.1."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):
                writer.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeChatServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False once the connection is to be closed."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines[1:] if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        if method != "POST" or not path.endswith("/chat/completions"):
            await _respond(writer, 404, {"error": {"message": f"no route {method} {path}"}})
            return True
        request = json.loads(body)
        self.requests.append(request)
        key = headers.get("authorization", "")
        self.api_keys.append(key.removeprefix("Bearer ") if key else None)
        fault = self.faults.popleft() if self.faults else Fault()
        if fault.status is not None:
            extra = {} if fault.retry_after is None else {"Retry-After": f"{fault.retry_after:g}"}
            message = {429: "rate limited", 500: "server error"}.get(fault.status, "refused")
            await _respond(writer, fault.status, {"error": {"message": message}}, extra)
            return True
        made = self.respond(request)
        reply = FakeReply(made) if isinstance(made, str) else made
        return await self._stream(writer, request, reply, fault)

    async def _stream(
        self,
        writer: asyncio.StreamWriter,
        request: dict[str, Any],
        reply: FakeReply,
        fault: Fault,
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
        )
        ident = f"chatcmpl-{next(self._ids)}"
        model = request.get("model", "fake")

        def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            data = {"id": ident, "object": "chat.completion.chunk", "model": model}
            return _event({**data, "choices": [choice], **more})

        words = re.findall(r"\S+\s*", reply.content)
        writer.write(chunk({"role": "assistant"}))
        for number, word in enumerate(words):
            if fault.cut_after is not None and number == fault.cut_after:
                await writer.drain()
                return False  # the connection closes with the body unfinished
            if fault.stall_after is not None and number == fault.stall_after:
                await writer.drain()
                await asyncio.sleep(fault.stall_seconds)
            if fault.garble_after is not None and number == fault.garble_after:
                writer.write(_chunked(b'data: {"choices": [{"delta": {"content": "\n\n'))
            if self.token_delay:
                await writer.drain()
                await asyncio.sleep(self.token_delay)
            writer.write(chunk({"content": word}))
        for index, (name, arguments) in enumerate(reply.tool_calls):
            call = {
                "index": index,
                "id": f"call_{next(self._ids)}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(arguments)},
            }
            writer.write(chunk({"tool_calls": [call]}))
        finish = "tool_calls" if reply.tool_calls else "stop"
        writer.write(chunk({}, finish))
        prompt = sum(len(str(m.get("content") or "")) for m in request.get("messages", []))
        completion = len(words) + len(reply.tool_calls)
        usage = {
            "prompt_tokens": max(1, prompt // 4),
            "completion_tokens": completion,
            "total_tokens": max(1, prompt // 4) + completion,
        }
        if (request.get("stream_options") or {}).get("include_usage"):
            data = {"id": ident, "object": "chat.completion.chunk", "model": model}
            writer.write(_event({**data, "choices": [], "usage": usage}))
        writer.write(_chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()
        return True


def _event(data: dict[str, Any]) -> bytes:
    return _chunked(b"data: " + json.dumps(data).encode() + b"\n\n")


def _chunked(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _respond(
    writer: asyncio.StreamWriter,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} X", "Content-Type: application/json"]
    lines += [f"Content-Length: {len(data)}", *(f"{k}: {v}" for k, v in (headers or {}).items())]
    writer.write("\r\n".join(lines).encode() + b"\r\n\r\n" + data)
    await writer.drain()


def main(argv: list[str] | None = None) -> None:
    """`python -m flowstore.llm.testing`: serve until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between words")
    parser.add_argument("--respond", help="module:function deciding each reply (else echo)")
    args = parser.parse_args(argv)
    respond: Respond = echo
    if args.respond:
        import importlib

        module, _, name = args.respond.partition(":")
        respond = getattr(importlib.import_module(module), name)

    async def serve() -> None:
        async with FakeChatServer(respond, args.token_delay, args.port) as server:
            print(f"serving {server.base_url}", flush=True)
            await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
