"""The `llm` node's own cost per streamed token, against a fake endpoint.

    python benchmarks/llm_node.py [--tokens 5000] [--repeat 5]

A fake OpenAI-compatible server (`flowstore.llm.testing`) runs in its own process and streams
a reply of `--tokens` words, one server-sent event each, as fast as it can. Timed, each the
median of `--repeat`:

- the client alone: `stream_chat` reading the stream (httpx, SSE lines, JSON chunks), with
  nothing done with the tokens: what any Python client pays;
- the node: a workflow of one `llm` node on a new SQLite file (WAL, synchronous FULL,
  durability `sync`), each token an event of the run committed to its log, the call a row of
  `flowstore_llm_calls`, the reply the node's output; from `engine.run` to its return.

The node's overhead per token is the difference, divided by the tokens. Printed, never
asserted. `FLOWSTORE_BENCH_SMOKE=1` runs the same code with 200 tokens, once.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flowstore import Engine, LlmConfig, Workflow  # noqa: E402
from flowstore.llm.client import Reply, stream_chat  # noqa: E402

_WORDS_VARIABLE = "FLOWSTORE_BENCH_LLM_WORDS"


def long_reply(request: dict[str, Any]) -> str:
    """The fake server's reply: as many words as the benchmark asks for."""
    return " ".join(f"w{index}" for index in range(int(os.environ[_WORDS_VARIABLE])))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(tokens: int) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "flowstore.llm.testing", "--port", str(port)),
            *("--respond", "benchmarks.llm_node:long_reply"),
        ],
        cwd=ROOT,
        env={**os.environ, _WORDS_VARIABLE: str(tokens), "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    server.stdout.readline()  # "serving ...": it listens
    return server, f"http://127.0.0.1:{port}/v1"


async def client_alone(base_url: str, tokens: int) -> float:
    """Seconds `stream_chat` takes to read the whole reply."""
    body = {"model": "m", "messages": [{"role": "user", "content": "go"}], "stream": True}
    reply = Reply()
    started = time.perf_counter()
    count = 0
    async for _ in stream_chat(base_url, None, body, read_timeout=60, reply=reply):
        count += 1
    elapsed = time.perf_counter() - started
    assert count == tokens, count
    return elapsed


async def node_run(base_url: str, tokens: int, path: Path) -> float:
    """Seconds a run of one `llm` node takes, its tokens committed as events."""
    flow = Workflow("bench_llm", inputs={"question": "str"}, output="answer")
    config = LlmConfig(model="m", base_url=base_url, api_key_env=None, prompt="{question}")
    flow.llm("answer", config, inputs=["question"])
    async with Engine(f"sqlite+aiosqlite:///{path}", workers=0) as engine:
        await engine.run(flow, {"question": "warm up"})  # the connection pool, the schema
        started = time.perf_counter()
        run = await engine.run(flow, {"question": "go"})
        elapsed = time.perf_counter() - started
        assert run.status == "succeeded" and len(run.output.split()) == tokens
        stored = [e async for e in engine.events(run.id) if e.type == "token"]
        assert len(stored) == tokens
    return elapsed


async def measure(base_url: str, tokens: int, repeat: int) -> tuple[float, float]:
    await client_alone(base_url, tokens)  # warm up
    alone, node = [], []
    with tempfile.TemporaryDirectory(prefix="flowstore-bench-llm-") as directory:
        for index in range(repeat):
            alone.append(await client_alone(base_url, tokens))
            node.append(await node_run(base_url, tokens, Path(directory) / f"{index}.db"))
    return statistics.median(alone), statistics.median(node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    smoke = os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1"
    parser.add_argument("--tokens", type=int, default=200 if smoke else 5_000)
    parser.add_argument("--repeat", type=int, default=1 if smoke else 5)
    args = parser.parse_args()
    server, base_url = start_server(args.tokens)
    try:
        alone, node = asyncio.run(measure(base_url, args.tokens, args.repeat))
    finally:
        server.terminate()
        server.wait(timeout=30)
    per_alone = alone / args.tokens * 1e6
    per_node = node / args.tokens * 1e6
    print(f"{args.tokens:,} streamed tokens, median of {args.repeat}")
    print(f"  client alone (httpx, SSE, JSON): {per_alone:7.1f} µs/token  {alone * 1000:8.1f} ms")
    print(f"  llm node, tokens in the run log: {per_node:7.1f} µs/token  {node * 1000:8.1f} ms")
    print(f"  the node's own overhead:         {per_node - per_alone:7.1f} µs/token")


if __name__ == "__main__":
    main()
