"""Shared resources: objects nodes receive by name, opened with the engine and closed with it."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Mapping
from typing import Any

from flowstore.errors import ExecutionError

__all__ = ["SharedResources"]


class SharedResources:
    """The resources of one engine: `open` enters them in order, `close` leaves the last first.

    A resource is an async context manager (entered and exited), a function or class returning
    one or an awaitable (called when opened), or any other object (given as it is).
    """

    def __init__(self, factories: Mapping[str, Any]) -> None:
        self._factories = dict(factories)
        self.opened: dict[str, Any] = {}
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def names(self) -> frozenset[str]:
        """The names of the resources, opened or not."""
        return frozenset(self._factories)

    async def open(self) -> None:
        """Open every resource, in the order given; on a failure, close those opened."""
        stack = contextlib.AsyncExitStack()
        try:
            for name, factory in self._factories.items():
                self.opened[name] = await _open(stack, name, factory)
        except BaseException:
            self.opened.clear()
            await stack.aclose()
            raise
        self._stack = stack

    async def close(self) -> None:
        """Close the resources, the last opened first."""
        stack, self._stack = self._stack, None
        self.opened.clear()
        if stack is not None:
            await stack.aclose()


async def _open(stack: contextlib.AsyncExitStack, name: str, factory: Any) -> Any:
    """A resource's object: entered if it is an async context manager, awaited if awaitable."""
    calls = callable(factory) and (isinstance(factory, type) or not _is_context(factory))
    made = factory() if calls else factory
    if inspect.isawaitable(made):
        made = await made
    if _is_context(made):
        try:
            return await stack.enter_async_context(made)
        except Exception as error:
            raise ExecutionError(f"resource {name!r} could not be opened: {error}") from error
    return made


def _is_context(value: Any) -> bool:
    return hasattr(value, "__aenter__") and hasattr(value, "__aexit__")
