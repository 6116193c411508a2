"""Timeout: an attempt that takes too long is cancelled and fails with `NodeTimeout`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from flowstore.errors import NodeTimeout

__all__ = ["with_timeout"]

T = TypeVar("T")


async def with_timeout(seconds: float | None, call: Callable[[], Awaitable[T]], *, node: str) -> T:
    """Await `call()`, cancelling it after `seconds` (None: no limit).

    A sync node runs in a worker thread that cannot be interrupted: its attempt fails at the
    deadline, and the thread finishes in the background with its result ignored (a sync
    generator's later tokens are dropped).

    Raises:
        NodeTimeout: The deadline passed; the call was cancelled.
    """
    if seconds is None:
        return await call()
    limit = asyncio.timeout(seconds)
    try:
        async with limit:
            return await call()
    except TimeoutError:
        if not limit.expired():
            raise  # the node's own TimeoutError (a client's timeout), not ours
        raise NodeTimeout(f"node {node!r} took longer than its timeout of {seconds:g} s") from None
