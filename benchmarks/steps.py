"""Node functions the benchmark workflows call by import path."""

from __future__ import annotations


async def step(previous: int) -> int:
    return previous + 1


async def merge(left: int, right: int) -> int:
    return left + right


async def start(n: int) -> int:
    return n
