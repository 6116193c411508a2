"""Streams and memory: tokens through a persisted stream, emit-to-reader latency, memory.

    python benchmarks/streaming.py [--tokens 200000] [--repeat 3]

- Token throughput: one node emits `--tokens` tokens as fast as it can (`emit_token`); the
  run ends once every token is committed to the log (SQLite WAL, synchronous
  FULL, durability `sync`). Tokens per second, median of `--repeat` fresh databases; each run
  checks that the log holds every token in order. Goal >= 50,000/s.
- Latency: a node emits 2,000 tokens, one every 0.5 ms, while a reader in the same process
  follows the run with `Engine.stream`; the time from `emit_token` to the reader receiving
  the event, p50 and p99. Goal p50 <= 1 ms, p99 <= 5 ms.
- Memory: appends to a thread from outside runs (one commit each), appends inside a node
  (committed with it), and reads of a 50-message window from a thread of 10,000 messages.

Printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowstore import Workflow
from flowstore.events import TokenEvent
from flowstore.runtime.context import NodeContext
from flowstore.runtime.engine import Engine


def token_flow(count: int) -> Workflow:
    flow = Workflow("tokens", output="speak")

    @flow.node
    async def speak(ctx: NodeContext) -> int:
        for index in range(count):
            await ctx.emit_token(f"t{index} ")
        return count  # not the text: 200,000 tokens would be a 1.4 MB output

    return flow


async def token_throughput(path: Path, count: int) -> float:
    async with Engine(f"sqlite+aiosqlite:///{path}", workers=0) as engine:
        started = time.perf_counter()
        run = await engine.run(token_flow(count), {})
        took = time.perf_counter() - started
        tokens = [e async for e in engine.events(run.id) if isinstance(e, TokenEvent)]
    assert [t.text for t in tokens] == [f"t{index} " for index in range(count)], "tokens lost"
    return count / took


async def latency(path: Path, count: int = 2_000) -> list[float]:
    emitted: dict[str, float] = {}
    flow = Workflow("paced", output="speak")

    @flow.node
    async def speak(ctx: NodeContext) -> int:
        for index in range(count):
            text = str(index)
            emitted[text] = time.perf_counter()
            await ctx.emit_token(text)
            await asyncio.sleep(0.0005)
        return count

    delays = []
    async with Engine(f"sqlite+aiosqlite:///{path}", workers=0) as engine:
        async for event in engine.stream(flow, {}):
            if isinstance(event, TokenEvent):
                delays.append(time.perf_counter() - emitted[event.text])
    assert len(delays) == count
    return delays


async def memory_figures(path: Path) -> tuple[float, float, float]:
    flow = Workflow("notes", output="note")

    @flow.node
    async def note(ctx: NodeContext) -> int:
        thread = ctx.memory.thread("in-run")
        for index in range(1_000):
            await thread.append("user", f"note {index}", tokens=3)
        return 1_000

    async with Engine(f"sqlite+aiosqlite:///{path}", workers=0) as engine:
        thread = engine.memory.thread("big")
        started = time.perf_counter()
        for index in range(1_000):
            await thread.append("user", f"message {index}", tokens=3)
        outside = 1_000 / (time.perf_counter() - started)
        started = time.perf_counter()
        await engine.run(flow, {})
        inside = 1_000 / (time.perf_counter() - started)
        await engine.store.append_messages("big", [engine_message(index) for index in range(9_000)])
        started = time.perf_counter()
        for _ in range(500):
            window = await thread.window(max_messages=50)
        reads = 500 / (time.perf_counter() - started)
        assert len(window) == 50
    return outside, inside, reads


def engine_message(index: int) -> object:
    from flowstore.store.records import NewMessage

    return NewMessage("assistant", f"reply {index}", tokens=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.tokens, args.repeat = 5000, 1
    with tempfile.TemporaryDirectory() as scratch:
        paths = (Path(scratch) / f"run-{n}.db" for n in range(1_000_000))
        rates = [
            asyncio.run(token_throughput(next(paths), args.tokens)) for _ in range(args.repeat)
        ]
        print(f"tokens through a persisted stream ({args.tokens:,} per run, SQLite FULL)")
        print(
            f"  {statistics.median(rates):>10,.0f} tokens/s (runs: "
            + ", ".join(f"{rate:,.0f}" for rate in rates)
            + ")   goal >= 50,000/s"
        )
        delays = sorted(asyncio.run(latency(next(paths))))
        p50 = delays[len(delays) // 2] * 1000
        p99 = delays[int(len(delays) * 0.99)] * 1000
        print("emit_token to a live reader (2,000 tokens, one per 0.5 ms)")
        print(
            f"  p50 {p50:.3f} ms, p99 {p99:.3f} ms, max {delays[-1] * 1000:.3f} ms"
            "   goal p50 <= 1 ms, p99 <= 5 ms"
        )
        outside, inside, reads = asyncio.run(memory_figures(next(paths)))
        print("conversation memory (SQLite FULL)")
        print(f"  append from outside a run (a commit each): {outside:>9,.0f} messages/s")
        print(f"  append inside a node (committed with it):  {inside:>9,.0f} messages/s")
        print(f"  read a 50-message window of 10,000:        {reads:>9,.0f} windows/s")


if __name__ == "__main__":
    main()
