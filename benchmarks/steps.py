"""Node functions the benchmark workflows call by import path."""

from __future__ import annotations

import asyncio

from flowstore import NodeContext


async def step(previous: int) -> int:
    return previous + 1


async def merge(left: int, right: int) -> int:
    return left + right


async def start(n: int) -> int:
    return n


async def nap(n: int) -> int:
    await asyncio.sleep(0.01)
    return n


async def gather(**values: int) -> int:
    return len(values)


async def slow_start(n: int) -> int:
    await asyncio.sleep(0.01)
    return n


async def slow_step(previous: int) -> int:
    await asyncio.sleep(0.01)
    return previous + 1


async def await_go(n: int, ctx: NodeContext) -> int:
    """Waits for the signal `go` (the waits benchmark) and returns its payload plus `n`."""
    go: int = await ctx.wait_for_signal("go")
    return n + go
