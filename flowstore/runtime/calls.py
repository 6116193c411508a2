"""One node execution: the call itself, wrapped in its policies (see `policies`).

`execute_node` is what a node's task runs. It calls the node's function the way its style
needs (awaited, in a worker thread, or iterated as a stream), validates what goes in and out,
applies timeout, retry and fallback, and encodes the output for storage, so an output that
cannot be stored fails the node here rather than the commit it would have shared.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowstore.definition.graph import CompiledNode, Graph
from flowstore.definition.validation import typed_output, validate_arguments, validate_output
from flowstore.errors import ConfigurationError, ExecutionError, NodeTimeout
from flowstore.runtime.context import NodeContext
from flowstore.runtime.memory import MemoryStage
from flowstore.runtime.policies import fall_back, with_breaker, with_retry, with_timeout
from flowstore.runtime.policies.cache import cache_key
from flowstore.runtime.policies.matching import covers
from flowstore.runtime.telemetry import NodeTiming, RunTelemetry
from flowstore.store import serde
from flowstore.store.protocol import Store
from flowstore.store.records import (
    CacheEntry,
    Change,
    ErrorChange,
    EventChange,
    MetricPoint,
    NodeChange,
    NodeStatus,
)

__all__ = [
    "CacheLookup",
    "start_lookup",
    "ChildRunner",
    "NodeJournal",
    "NodeOutcome",
    "error_change",
    "error_value",
    "execute_node",
]

ChildRunner = Callable[[CompiledNode, dict[str, Any], NodeContext], Awaitable[Any]]
"""Runs a subworkflow node's child run to its end and returns its output (the engine's)."""

Commit = Callable[[Sequence[Change], Sequence[MetricPoint]], Awaitable[object]]
"""Commits changes of the run durably, in order with the rest (the executor's committer)."""


def error_value(node: str | None, error: BaseException) -> dict[str, Any]:
    """An error as stored with a failed node or run."""
    return {
        "type": _type_name(error),
        "message": str(error),
        "node": node,
        "traceback": "".join(traceback.format_exception(error)),
    }


def error_change(
    node: str | None,
    key: str,
    attempt: int | None,
    error: BaseException,
    outcome: str,
    details: Any = None,
) -> ErrorChange:
    """The error report of a failure and what happened next."""
    return ErrorChange(
        _type_name(error),
        str(error),
        outcome,
        node=node,
        key=key,
        attempt=attempt,
        traceback="".join(traceback.format_exception(error)),
        details=details,
    )


def _type_name(error: BaseException) -> str:
    return f"{type(error).__module__}.{type(error).__qualname__}"


class NodeJournal:
    """Records a node execution's retries durably, and remembers its current attempt."""

    def __init__(
        self, commit: Commit, timing: NodeTiming, measure: RunTelemetry, attempt: int
    ) -> None:
        self._commit = commit
        self._measure = measure
        self.timing = timing
        self.node = timing.node
        self.key = timing.key
        self.attempt = attempt

    async def retrying(self, error: Exception, attempt: int, delay: float) -> None:
        """Attempt `attempt` failed with `error`; the next starts in `delay` seconds."""
        self.timing.attempt_ends("timed_out" if isinstance(error, NodeTimeout) else "failed")
        await self._commit(
            [error_change(self.node, self.key, attempt, error, "retried", {"delay": delay})],
            self._measure.event("node_retry", self.node),
        )

    async def breaker_moved(self, name: str, before: str, after: str) -> None:
        """A circuit breaker this node called through changed state."""
        payload = {"breaker": name, "from": before, "to": after}
        await self._commit(
            [EventChange("breaker", payload, node=self.node, key=self.key)],
            self._measure.event("breaker_transition", self.node, **payload),
        )

    async def attempt_starts(self, attempt: int) -> None:
        """Attempt `attempt` is about to start."""
        self.attempt = attempt
        self.timing.attempt_starts(attempt)
        await self._commit(
            [NodeChange(self.node, NodeStatus.RUNNING, key=self.key, attempt=attempt)], ()
        )


CacheLookup = Awaitable[tuple[str, CacheEntry | None]]
"""A node's cache key and the live entry under it, if any."""


def start_lookup(
    graph: Graph, node: CompiledNode, arguments: Mapping[str, Any], store: Store
) -> asyncio.Future[tuple[str, CacheEntry | None]]:
    """Start looking up `node`'s cache entry for `arguments` (a key that cannot be made is an
    error of the node, raised when the lookup is awaited)."""

    async def lookup() -> tuple[str, CacheEntry | None]:
        key = cache_key(graph, node, arguments)
        return key, await store.get_cached(key)

    return asyncio.ensure_future(lookup())


@dataclass(frozen=True, slots=True)
class NodeOutcome:
    """A node execution that produced an output.

    Attributes:
        output: The output.
        encoded: The output encoded for storage.
        changes: Changes to commit with the node's success (a fallback's report and event).
        cache_hit: Whether the output came from the cache; None for a node without a cache.
    """

    output: Any
    encoded: Any
    changes: tuple[Change, ...] = ()
    cache_hit: bool | None = None


async def execute_node(
    graph: Graph,
    node: CompiledNode,
    arguments: dict[str, Any],
    items: Any,
    context: NodeContext,
    journal: NodeJournal,
    *,
    store: Store,
    outputs: Mapping[str, Any],
    run_child: ChildRunner | None,
    lookup: CacheLookup | None = None,
    resources: Mapping[str, Any] | None = None,
) -> NodeOutcome:
    """Run one node execution through its policies:
    cache(fallback(retry(breaker(timeout(call))))).

    `lookup` is the node's cache lookup if one was started already (`start_lookup`);
    without it, a node with a cache policy looks up its key here.
    """
    spec = node.spec
    key = None
    if spec.cache is not None:
        lookup = lookup or start_lookup(graph, node, arguments, store)
        key, entry = await lookup
        if entry is not None:
            sealer = context.run.sealer
            opened = entry.value if sealer is None else sealer.open(serde.plain(entry.value))
            output = validate_output(graph, node, opened)
            hit = EventChange("cache_hit", {"key": key}, node=node.name, key=context.key)
            # The entry is the output as it was encoded for storage: stored again as it is.
            return NodeOutcome(output, entry.value, (hit,), cache_hit=True)
    timeout = spec.timeout if spec.timeout is not None else graph.spec.config.node_timeout

    stage = context.memory_stage
    if stage is None:
        stage = MemoryStage(context.run.run_id, node.name, context.key, context.run.memory_config)
        context = dataclasses.replace(context, memory_stage=stage)

    async def attempt(number: int) -> Any:
        stage.clear()  # only the memory writes of the attempt that succeeds are committed
        current = (
            context if number == context.attempt else dataclasses.replace(context, attempt=number)
        )

        def call() -> Awaitable[Any]:
            return _call(graph, node, arguments, items, current, run_child, resources or {})

        # A policy that is not set adds no layer: most nodes of a run are called bare.
        timed = call if timeout is None else lambda: with_timeout(timeout, call, node=node.name)
        if spec.breaker is None:
            return await timed()
        return await with_breaker(spec.breaker, store, timed, moved=journal.breaker_moved)

    changes: tuple[Change, ...] = ()
    fell_back = False
    try:
        if spec.retry is None:
            output = await attempt(context.attempt)
        else:
            output = await with_retry(spec.retry, context.attempt, attempt, journal)
        changes = tuple(stage.changes())
    except Exception as error:
        if spec.fallback is None or not covers(spec.fallback.on, error):
            raise
        used = await fall_back(node, error, arguments, outputs)
        output, fell_back = used.output, True
        changes = (
            error_change(
                node.name,
                context.key,
                journal.attempt,
                error,
                "fell_back",
                {"fallback": used.source},
            ),
            EventChange("fallback", {"source": used.source}, node=node.name, key=context.key),
        )
    encoded = store.encode(output, what=f"output of node {node.name!r}")
    if not typed_output(node):
        # What its dependents get live is what they would get read back after a resume.
        output = serde.plain(encoded)
    if key is not None and spec.cache is not None and not fell_back:  # never a fallback's output
        sealer = context.run.sealer
        await store.put_cached(
            key,
            workflow=graph.name,
            node=node.name,
            value=encoded if sealer is None else sealer.seal(encoded),
            ttl_seconds=spec.cache.ttl,
        )
    return NodeOutcome(output, encoded, changes, cache_hit=None if key is None else False)


async def _call(
    graph: Graph,
    node: CompiledNode,
    arguments: dict[str, Any],
    items: Any,
    context: NodeContext,
    run_child: ChildRunner | None,
    resources: Mapping[str, Any],
) -> Any:
    if node.spec.workflow is not None:
        assert run_child is not None
        if node.spec.map is None:
            return await run_child(node, arguments, context)
        # Each item a child run of its own, durable on its own: its id comes from the item's
        # idempotency key, so a parent that runs again takes up the same child.
        bound = [param.name for param in node.params if param.source is None]

        async def child(item: Any, own: NodeContext) -> Any:
            return await run_child(node, {**arguments, **dict.fromkeys(bound, item)}, own)

        return await _map_items(graph, node, items, context, child)
    checked = validate_arguments(graph, node, arguments)
    if node.context_param is not None:
        checked[node.context_param] = context
    for param in node.params:
        if param.source is None or param.source not in graph.resources:
            continue
        if param.source not in resources:
            raise ConfigurationError(
                f"node {node.name!r} needs the resource {param.source!r}, which this engine "
                f"does not provide: give it as Engine(resources={{{param.source!r}: ...}}), "
                "or `--resources module:mapping` to the flowstore command"
            )
        checked[param.name] = resources[param.source]
    if node.spec.map is None:
        return validate_output(graph, node, await _invoke(node, checked, context))
    item_name = node.spec.map.item

    async def call(item: Any, own: NodeContext) -> Any:
        single = validate_arguments(graph, node, {item_name: item})
        if node.context_param is not None:
            single[node.context_param] = own
        return validate_output(graph, node, await _invoke(node, {**checked, **single}, own))

    return await _map_items(graph, node, items, context, call)


async def _map_items(
    graph: Graph,
    node: CompiledNode,
    items: Any,
    context: NodeContext,
    call: Callable[[Any, NodeContext], Awaitable[Any]],
) -> list[Any]:
    """`call` each item of a map node, at most `map.concurrency` at once, each with a context
    of its own (its own idempotency key), each result durable as it comes (an item whose
    result an earlier attempt recorded is not called again); the results in item order."""
    assert node.spec.map is not None
    if not isinstance(items, list | tuple):
        raise ExecutionError(
            f"node {node.name!r} maps over {node.spec.map.over!r}, which is a "
            f"{type(items).__name__}, not a list"
        )
    limit = asyncio.Semaphore(node.spec.map.concurrency or len(items) or 1)
    done = await _items_done(graph, node, context)

    async def one(index: int, item: Any) -> Any:
        if index in done:  # its result is in the log already: the item is not called again
            return done[index]
        async with limit:
            result = await call(item, dataclasses.replace(context, item=index))
            if context.run.emit is not None:  # each item's result durable on its own
                payload = {"item": index, "output": result}
                await context.run.emit(
                    EventChange(MAP_ITEM, payload, node.name, context.key, context.attempt)
                )
            return result

    return list(await asyncio.gather(*(one(index, item) for index, item in enumerate(items))))


MAP_ITEM = "map_item"
"""The event that records one map item's result, in order with the run's other changes."""


async def _items_done(graph: Graph, node: CompiledNode, context: NodeContext) -> dict[int, Any]:
    """The results of a map node's items that an earlier attempt of this execution recorded
    (a retry, or a run resumed after a crash), by item index, rebuilt by the node's return
    annotation."""
    store = context.run.store
    if context.attempt == 1 or store is None:
        return {}
    run_id, typed = context.run.run_id, typed_output(node)
    payloads = await store.read_events(run_id, MAP_ITEM, node=node.name, key=context.key)
    if context.run.sealer is not None:
        payloads = [context.run.sealer.open(payload) for payload in payloads]
    return {
        payload["item"]: (
            validate_output(graph, node, payload["output"]) if typed else payload["output"]
        )
        for payload in payloads
    }


async def _invoke(node: CompiledNode, arguments: dict[str, Any], context: NodeContext) -> Any:
    """Call the node's function the way its style needs; never block the event loop.

    A generator's string items are streamed as tokens as they come (`emit_token`).
    """
    function = node.function
    assert function is not None
    if node.style == "async":
        return await function(**arguments)
    if node.style == "async_generator":
        items = []
        async for item in function(**arguments):
            if isinstance(item, str) and context.run.emit is not None:
                await context.emit_token(item)
            items.append(item)
        return _joined(items)
    if node.style == "sync_generator":
        loop = asyncio.get_running_loop()
        # Set on the loop once this call is over (a timeout, a cancellation): the thread
        # cannot be stopped, but what it yields after that is dropped, never emitted.
        over = threading.Event()

        async def emit(text: str) -> None:
            if not over.is_set():
                await context.emit_token(text)

        def iterate() -> list[Any]:
            items = []
            generator = function(**arguments)
            try:
                for item in generator:
                    if over.is_set():
                        break
                    if isinstance(item, str) and context.run.emit is not None:
                        # Waits while the run's queue is full, as an async generator would.
                        asyncio.run_coroutine_threadsafe(emit(item), loop).result()
                    items.append(item)
            finally:
                generator.close()
            return items

        try:
            return _joined(await asyncio.to_thread(iterate))
        finally:
            over.set()
    return await asyncio.to_thread(function, **arguments)


def _joined(items: list[Any]) -> Any:
    """A streamed output: its text when every piece is text, else the list of pieces."""
    return "".join(items) if items and all(isinstance(item, str) for item in items) else items
