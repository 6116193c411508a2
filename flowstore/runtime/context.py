"""What a node can know about where it runs: `RunContext` and `NodeContext`."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from flowstore.definition.spec import MemoryConfig
from flowstore.errors import ConfigurationError, ExecutionError
from flowstore.runtime.memory import Memory, MemoryStage
from flowstore.runtime.sealing import Sealer
from flowstore.runtime.waits import NO_DEFAULT, RunWaits
from flowstore.store.protocol import Store
from flowstore.store.records import MEMORY_EVENTS, EventChange, LlmCallChange, RunId

__all__ = ["ChildWorkflows", "Emit", "NodeContext", "RunContext", "emit_engine_event"]

Emit = Callable[[EventChange | LlmCallChange], Awaitable[None]]
"""Puts an event on its way to the run's log, in order (the executor's)."""

_NO_LIMITS: Final = MemoryConfig()

_ENGINE_EVENTS = frozenset(
    {"token", "error", "cache_hit", "fallback", "breaker", "map_item", "llm_call", "tool_call"}
) | frozenset(MEMORY_EVENTS.values())


class ChildWorkflows(Protocol):
    """The workflows a node may start as child runs of its run, by name (the engine's)."""

    def inputs_schema(self, name: str) -> dict[str, Any]:
        """The JSON schema of workflow `name`'s inputs.

        Raises:
            ExecutionError: No workflow of that name is registered with the engine.
        """
        ...

    def description(self, name: str) -> str:
        """What workflow `name` does (its description, else its name)."""
        ...

    async def run(self, name: str, inputs: dict[str, Any], ctx: NodeContext, key: str) -> Any:
        """Run workflow `name` as a child of `ctx`'s run, to its end; return its output. The
        child's id comes from the node execution's idempotency key and `key`, so the node
        running again with the same `key` takes up the same child instead of a new one."""
        ...


@dataclass(frozen=True, slots=True)
class RunContext:
    """The run a node belongs to.

    Attributes:
        run_id: The run's id.
        workflow: The workflow's name.
        inputs: The run's validated inputs.
        emit: Where the run's events go; None outside an executing run.
        store: The run's store (for memory); None outside an executing run.
        memory_config: The workflow's memory limits.
        sealer: Encrypts the run's secret fields where they are stored; None without a key.
        waits: The run's durable waits (`runtime/waits.py`); None outside an executing run.
        children: The workflows nodes may start as child runs; None outside an engine.
    """

    run_id: RunId
    workflow: str
    inputs: Mapping[str, Any]
    emit: Emit | None = None
    store: Store | None = None
    memory_config: MemoryConfig = _NO_LIMITS
    sealer: Sealer | None = None
    waits: RunWaits | None = None
    children: ChildWorkflows | None = None


@dataclass(frozen=True, slots=True)
class LoopPlace:
    """Where a node execution is in a loop: the loop (named after the node that closes it),
    its body, the iteration, and the body's outputs in the previous iteration."""

    name: str
    body: frozenset[str]
    iteration: int
    previous: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NodeContext:
    """Passed to a node that declares a parameter annotated `NodeContext`.

    Attributes:
        run: The run.
        node: The node's name.
        key: Tells executions of the same node apart (a map item, a loop iteration); "" else.
        attempt: 1 for the first call, 2 for the first retry, and so on.
        run_logger: The run's logger; `logger` is its child named after the node.
        memory_stage: The memory writes of this attempt, committed with its success.
        item: In a map node, the index of the item this call handles; None else.
        loop: Where the node is in a loop, if it is in one: its `iteration`, and the
            outputs of the loop's nodes in the previous one (`previous`).
    """

    run: RunContext
    node: str
    key: str
    attempt: int
    run_logger: logging.Logger
    memory_stage: MemoryStage | None = None
    item: int | None = None
    loop: LoopPlace | None = None

    @property
    def iteration(self) -> int:
        """The loop iteration this execution is in: 0 for the first (and outside loops)."""
        return 0 if self.loop is None else self.loop.iteration

    def previous(self, node: str, default: Any = None) -> Any:
        """The output `node` gave in the previous iteration of this node's loop, so a loop
        can carry state from one iteration to the next; `default` in the first iteration
        (or when `node` was skipped then). Durable: a resumed run reads the same.

        Raises:
            ConfigurationError: This node is in no loop, or `node` is not in its loop.
        """
        if self.loop is None or node not in self.loop.body:
            where = f"the loop of {self.loop.name!r}" if self.loop else "no loop"
            raise ConfigurationError(
                f"node {self.node!r} asked for the previous output of {node!r}, but it is in "
                f"{where}{'' if self.loop is None else f' (body: {sorted(self.loop.body)})'}: "
                "ctx.previous reads the nodes of the node's own loop"
            )
        return self.loop.previous.get(node, default)

    @property
    def memory(self) -> Memory:
        """Conversation threads and entities; what this node writes is committed with its
        success (see `flowstore.runtime.memory`)."""
        if self.run.store is None or self.memory_stage is None:
            raise ExecutionError(f"node {self.node!r} uses memory outside of an executing run")
        return Memory(self.run.store, self.run.memory_config, self.memory_stage)

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the workflow and node (made when first asked for)."""
        return self.run_logger.getChild(self.node)

    @property
    def run_id(self) -> RunId:
        """The run's id."""
        return self.run.run_id

    @property
    def inputs(self) -> Mapping[str, Any]:
        """The run's validated inputs."""
        return self.run.inputs

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this node execution, across retries and recoveries.

        Pass it to the outside world (payments, emails, tickets) so a node that runs again
        after a crash does not do the same thing twice. Each item of a map node has its own
        (`…/node#3` for the fourth item).
        """
        suffix = f"/{self.key}" if self.key else ""
        item = f"#{self.item}" if self.item is not None else ""
        return f"{self.run.run_id}/{self.node}{suffix}{item}"

    @property
    def waits_resumed(self) -> int:
        """How many waits the node reached before this run of it: 0 on its first run. A node
        runs again from its start when a wait is over (see `flowstore.runtime.waits`), so
        the code before its waits runs again; this says so."""
        return 0 if self.run.waits is None else self.run.waits.resumed(self.node, self.key)

    async def sleep(self, seconds: float | None = None, *, until: datetime | None = None) -> None:
        """Wait durably for `seconds`, or until the time `until`: the run is stored `waiting`
        and holds no worker meanwhile; any worker takes it up when the time has come, and
        this node runs again from its start, its earlier waits returning at once (see
        `flowstore.runtime.waits` for the rule)."""
        if (seconds is None) == (until is None):
            raise ExecutionError(f"node {self.node!r}: sleep takes seconds or until=, one of them")
        if until is not None and until.tzinfo is None:
            raise ExecutionError(f"node {self.node!r}: sleep(until=...) needs an aware datetime")
        deadline = until or datetime.now(UTC) + timedelta(seconds=seconds or 0.0)
        await self._waits().sleep(self.node, self.key, deadline)

    async def wait_for_signal(
        self,
        name: str,
        *,
        model: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109  (a durable deadline, not a time limit)
        default: Any = NO_DEFAULT,
    ) -> Any:
        """Wait durably for a signal named `name` (`Engine.signal`, `Client.signal`,
        `flowstore signal`) and return its payload, validated by `model` when given. A signal
        sent before the wait is there at once; each is taken by one wait, once. After
        `timeout` seconds the wait returns `default`, or fails with `SignalTimeout` without
        one. Meanwhile the run is stored `waiting` and holds no worker (see
        `flowstore.runtime.waits` for the rule)."""
        return await self._waits().wait_for_signal(
            self.node, self.key, name, model=model, timeout=timeout, default=default
        )

    def _waits(self) -> RunWaits:
        if self.run.waits is None:
            raise ExecutionError(f"node {self.node!r} waits outside of an executing run")
        return self.run.waits

    async def emit_token(self, text: str) -> None:
        """Stream a piece of this node's output.

        Readers following the run (`Engine.events`, `Engine.stream`, `flowstore runs tail`)
        get it at once; it is stored in the run's log, in order, with the commits that follow.
        A node that is an async generator of strings streams each one this way.
        """
        if not isinstance(text, str):
            raise TypeError(f"node {self.node!r} emitted a token that is not a str: {text!r}")
        await self._emit(EventChange("token", text, self.node, self.key, self.attempt))

    async def emit(self, name: str, payload: Any = None) -> None:
        """Record a custom event in the run's log (a JSON `payload`), told to its readers."""
        if name in _ENGINE_EVENTS:
            raise ExecutionError(
                f"node {self.node!r} cannot emit an event named {name!r}: the engine's own "
                f"events are {', '.join(sorted(_ENGINE_EVENTS))}"
            )
        await self._emit(EventChange(name, payload, self.node, self.key, self.attempt))

    async def record_model_call(
        self,
        *,
        endpoint: str,
        model: str,
        outcome: str,
        latency_ms: float,
        status_code: int | None = None,
        finish_reason: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cost: float | None = None,
        first_token_ms: float | None = None,
        error: str | None = None,
    ) -> None:
        """Record a call this node made to a model (`outcome` `ok`, `cached` or `failed`), in
        `flowstore_llm_calls`, summed by the view `flowstore_llm_usage` and `flowstore stats`.

        The `llm` node records each of its calls this way; a node that calls a model itself
        can too. The row is committed with the run's log, in order, once.
        """
        if outcome not in ("ok", "cached", "failed"):
            raise ExecutionError(
                f"node {self.node!r}: a model call's outcome is ok, cached or failed, "
                f"not {outcome!r}"
            )
        total = None
        if prompt_tokens is not None or completion_tokens is not None:
            total = (prompt_tokens or 0) + (completion_tokens or 0)
        await self._emit(
            LlmCallChange(
                self.run.workflow,
                self.node,
                self.key,
                self.attempt,
                endpoint,
                model,
                outcome,
                latency_ms,
                status_code=status_code,
                finish_reason=finish_reason,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                total_tokens=total,
                cost=cost,
                first_token_ms=first_token_ms,
                error=error,
            )
        )

    async def _emit(self, change: EventChange | LlmCallChange) -> None:
        if self.run.emit is None:
            raise ExecutionError(f"node {self.node!r} emits outside of an executing run")
        await self.run.emit(change)


async def emit_engine_event(context: NodeContext, name: str, payload: Any) -> None:
    """Record one of the engine's own events for a node (`breaker`, `tool_call`), which
    `NodeContext.emit` keeps for the engine; for flowstore's built-in node types."""
    if name not in _ENGINE_EVENTS:
        raise ExecutionError(f"{name!r} is not one of the engine's events")
    await context._emit(EventChange(name, payload, context.node, context.key, context.attempt))
