"""Hooks: callbacks told of what happens in runs, after it is committed.

Register them on an `Engine` (every run it executes) or on a `Workflow` (its runs only):

    @engine.on("node_end")
    async def notify(event: HookEvent) -> None: ...

Events: `run_start`, `run_end`, `node_start`, `node_end`, `node_error` (every failure, also
one that is retried or falls back), `node_retry`, `cache_hit`, and `event` (every event in a
run's log, a node's custom events included). A hook hears of a transition once it is durable.
Sync hooks are called in the event loop (keep them quick); async hooks run as tasks, and a
run's hooks have all finished when `Engine.run` returns. A hook that raises is logged and
reported in `flowstore_error_reports` (outcome `hook_failed`); the run goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, get_args, overload

from flowstore.store.records import RunId

__all__ = ["Hook", "HookEvent", "HookKind", "Hooks"]

HookKind = Literal[
    "run_start",
    "run_end",
    "node_start",
    "node_end",
    "node_error",
    "node_retry",
    "cache_hit",
    "event",
]
_KINDS = frozenset(get_args(HookKind))
Hook = Callable[["HookEvent"], Awaitable[None] | None]
H = TypeVar("H", bound=Hook)


@dataclass(frozen=True, slots=True)
class HookEvent:
    """What a hook is told.

    Attributes:
        kind: Which event this is.
        run_id: The run.
        workflow: The run's workflow.
        node: The node, for node events.
        key: The node execution's key (a loop iteration, a map item).
        attempt: The attempt, for `node_start`, `node_error` and `node_retry`.
        status: The new status, for `node_end` and `run_end`.
        error: The failure (`type`, `message`), for `node_error`, `node_retry` and failed ends.
        name: The event's name, for `event`.
        payload: The event's payload, for `event`: the value, as `Engine.events` gives it.
        output: The output, for `node_end` and `run_end` of a success.
    """

    kind: HookKind
    run_id: RunId
    workflow: str
    node: str | None = None
    key: str = ""
    attempt: int | None = None
    status: str | None = None
    error: dict[str, Any] | None = None
    name: str | None = None
    payload: Any = None
    output: Any = None


class Hooks:
    """Hooks by event; `on` registers one, as a decorator or called with the function."""

    def __init__(self) -> None:
        self._hooks: dict[str, list[Hook]] = {}

    @overload
    def on(self, kind: HookKind, hook: None = None) -> Callable[[H], H]: ...

    @overload
    def on(self, kind: HookKind, hook: H) -> H: ...

    def on(self, kind: HookKind, hook: H | None = None) -> Any:
        """Register `hook` for `kind` (returns it, so it works as a decorator too).

        Raises:
            ValueError: `kind` is not an event hooks can be told of.
        """
        if kind not in _KINDS:
            raise ValueError(f"unknown hook event {kind!r}; one of: {', '.join(sorted(_KINDS))}")

        def register(function: H) -> H:
            self._hooks.setdefault(kind, []).append(function)
            return function

        return register if hook is None else register(hook)

    def __bool__(self) -> bool:
        return any(self._hooks.values())

    def hooks_for(self, kind: str) -> list[Hook]:
        """The hooks registered for `kind`, in order."""
        return self._hooks.get(kind, [])

    @staticmethod
    def merged(sets: Iterable[Hooks]) -> Hooks:
        """One set with the hooks of every set, in order."""
        merged = Hooks()
        for hooks in sets:
            for kind, functions in hooks._hooks.items():
                merged._hooks.setdefault(kind, []).extend(functions)
        return merged
