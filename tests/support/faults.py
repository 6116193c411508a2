"""Faults injected into a store: chosen calls of a method fail or hang, as a failing database
would make them (a lock held past the busy timeout, a dropped connection, a disk error)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from typing import Any


class Fault:
    """Replaces `store.<method>` so that its calls numbered in `calls` (1-based) fail with
    `error` (or hang for `hang` seconds first; a hang without an error then goes through).
    `before` is awaited when a chosen call starts (to look at the store as the fault found
    it). `undo()` puts the method back. `count` is how many calls were made."""

    def __init__(
        self,
        store: Any,
        method: str,
        calls: Collection[int] | Callable[[int], bool],
        error: BaseException | None = None,
        *,
        hang: float = 0.0,
        before: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store, self._method = store, method
        self._real = getattr(store, method)
        self._chosen = calls if callable(calls) else calls.__contains__
        self.count = 0
        self.failed = 0
        real, error_to_raise = self._real, error

        async def faulty(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            if self._chosen(self.count):
                if before is not None:
                    await before()
                if hang:
                    await asyncio.sleep(hang)
                if error_to_raise is not None:
                    self.failed += 1
                    raise error_to_raise
            return await real(*args, **kwargs)

        setattr(store, method, faulty)

    def undo(self) -> None:
        setattr(self._store, self._method, self._real)
