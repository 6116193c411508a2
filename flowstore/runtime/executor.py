"""The executor: runs one claimed run of a compiled graph, durably, to its end.

A ready-set scheduler. A node is decided once every node upstream of it has ended: it runs, or
it is skipped (its condition is false, a router chose another route, or its join policy is not
met). Every decision and every result goes through the store before anything depends on it
(durability `sync`): when nodes finish, their results and the start of the nodes they make
ready are committed together in one transaction, and transitions that arrive while a commit is
in flight share the next one (group commit).

On resume, the committed state is read back: nodes that succeeded are never run again, nodes
that were running when the previous owner died are recorded as `recovered` and run again (at
least once), and the scheduler carries on from there.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flowstore.definition.graph import CompiledNode, Graph
from flowstore.errors import ExecutionError, LeaseLost, RunTimeout
from flowstore.hooks import Hooks
from flowstore.logs import engine_logger, redacting
from flowstore.runtime.calls import (
    ChildRunner,
    NodeJournal,
    NodeOutcome,
    error_change,
    error_value,
    execute_node,
)
from flowstore.runtime.committer import Committer, Observer
from flowstore.runtime.context import ChildWorkflows, LoopPlace, NodeContext, RunContext
from flowstore.runtime.debugging import DebugLog
from flowstore.runtime.hooks import RunHooks
from flowstore.runtime.loops import Loops
from flowstore.runtime.memory import MemoryStage
from flowstore.runtime.policies.cache import cache_key
from flowstore.runtime.redaction import Redactor
from flowstore.runtime.sealing import Sealer
from flowstore.runtime.state import RunState, ready, restore
from flowstore.runtime.streams import LiveRun
from flowstore.runtime.telemetry import RunTelemetry
from flowstore.runtime.waits import NodeWaits, RunWaits
from flowstore.store.protocol import Store
from flowstore.store.records import (
    CacheEntry,
    Change,
    CheckpointChange,
    Claim,
    MemoryClearChange,
    MetricPoint,
    NewRun,
    NodeChange,
    NodeStatus,
    RunChange,
    RunStatus,
    Span,
)

__all__ = ["ChildRunner", "Observer", "execute_run"]


async def execute_run(
    store: Store,
    claim: Claim,
    graph: Graph,
    inputs: Mapping[str, Any],
    *,
    logger: logging.Logger | None = None,
    observe: Observer | None = None,
    cancelled: asyncio.Event | None = None,
    lost: asyncio.Event | None = None,
    run_child: ChildRunner | None = None,
    children: ChildWorkflows | None = None,
    telemetry: bool = True,
    hooks: Hooks | None = None,
    debug: bool = False,
    resources: Mapping[str, Any] | None = None,
    tracer: Any = None,
    secret_fields: Sequence[str] = (),
    live: LiveRun | None = None,
    create: NewRun | None = None,
    sealer: Sealer | None = None,
    redactor: Redactor | None = None,
) -> RunStatus:
    """Run a claimed run to its end (or until its lease is lost); return how it ended.

    When `cancelled` is set (or the run was asked to cancel before this worker took it), the
    running nodes are cancelled and the run ends `cancelled`. When `lost` is set (the lease
    could not be renewed), the running nodes are cancelled and nothing more is written. With
    `telemetry`, metrics and
    spans are stored with the transitions (see `telemetry.py`); `hooks` are told of the run's
    changes once they are committed, and have all finished when this returns. In debug mode
    (`debug`, or the workflow's `config.debug`), every node's inputs, output, attempts and
    timings are logged at DEBUG level and every attempt gets a span. `resources` are the
    shared objects nodes receive by name (the engine's), `children` the workflows nodes may
    start as child runs (the engine's). With an OpenTelemetry `tracer`, the
    run's spans are exported when it ends (see `otel.py`). The values of `secret_fields` (with
    the workflow's `config.secret_fields`) are kept out of the errors it stores (`redaction.py`)
    and, with a `sealer`, stored encrypted everywhere else (`sealing.py`).
    A `redactor` made by the caller (for the same fields) is used instead of a new one.
    A `live` run shows its changes to readers in this process as they are made (`streams.py`).
    With `create`, the run is not stored yet: `claim` is of that planned run (`Store.plan_run`),
    and the run's first commit creates it.

    Raises:
        LeaseLost: Another worker owns the run now; this one stopped and wrote nothing more.
    """
    if run_child is None and any(node.spec.workflow for node in graph.nodes.values()):
        raise ExecutionError(
            f"workflow {graph.name!r} has subworkflow nodes: run it with an Engine"
        )
    if redactor is None:
        redactor = Redactor.of(secret_fields, graph.spec.config.secret_fields)
    if sealer is not None:
        sealer = sealer.for_fields(secret_fields, graph.spec.config.secret_fields)
    if redactor is not None:
        redactor.learn(dict(inputs))
    run_hooks = RunHooks(hooks, store, claim.run.id, graph.name, redactor) if hooks else None
    if run_hooks is not None:
        observe = _both(observe, run_hooks.observe)
    try:
        with redacting(redactor):  # the engine's log lines too, while the run executes
            return await _execute(
                store,
                claim,
                graph,
                inputs,
                logger,
                observe,
                cancelled,
                lost or asyncio.Event(),
                run_child,
                children,
                telemetry,
                debug or graph.spec.config.debug,
                resources or {},
                tracer,
                redactor,
                live,
                create,
                sealer,
            )
    finally:
        if run_hooks is not None:
            await run_hooks.drain()


def _cache_keys(
    graph: Graph, starting: Sequence[tuple[CompiledNode, dict[str, Any], str]], store: Store
) -> dict[str, str]:
    """The cache key of each starting node with a cache policy (a node whose key cannot be
    made looks it up itself, and fails with the reason)."""
    keys = {}
    for node, arguments, _ in starting:
        if node.spec.cache is None:
            continue
        try:
            keys[node.name] = cache_key(graph, node, arguments)
        except ExecutionError:
            continue
    return keys


def _found(key: str, entry: CacheEntry | None) -> asyncio.Future[tuple[str, CacheEntry | None]]:
    done: asyncio.Future[tuple[str, CacheEntry | None]] = asyncio.get_running_loop().create_future()
    done.set_result((key, entry))
    return done


def _deadline(claim: Claim, graph: Graph) -> float | None:
    """Seconds left before the run's `run_timeout`, counted from its first start."""
    limit = graph.spec.config.run_timeout
    if limit is None:
        return None
    started = claim.run.started_at or datetime.now(UTC)
    return limit - (datetime.now(UTC) - started).total_seconds()


def _both(first: Observer | None, second: Observer) -> Observer:
    if first is None:
        return second

    def both(changes: Sequence[Change]) -> None:
        first(changes)
        second(changes)

    return both


async def _execute(
    store: Store,
    claim: Claim,
    graph: Graph,
    inputs: Mapping[str, Any],
    logger: logging.Logger | None,
    observe: Observer | None,
    cancelled: asyncio.Event | None,
    lost: asyncio.Event,
    run_child: ChildRunner | None,
    children: ChildWorkflows | None,
    telemetry: bool,
    debug: bool,
    resources: Mapping[str, Any],
    tracer: Any,
    redactor: Redactor | None,
    live: LiveRun | None,
    create: NewRun | None,
    sealer: Sealer | None,
) -> RunStatus:
    state = RunState(graph, inputs)
    loops = Loops(graph)
    committer = Committer(store, claim, observe, redactor, live, create, sealer)
    measure = RunTelemetry(claim, graph.name, enabled=telemetry, every_attempt=debug, tracer=tracer)
    metrics: list[MetricPoint] = measure.run_starts()
    spans: list[Span] = []
    waits = RunWaits(
        store,
        claim.run.id,
        lambda changes: committer.commit_behind(changes, ()),
        graph.signal_models,
    )
    run_context = RunContext(
        claim.run.id,
        graph.name,
        state.inputs,
        committer.emit,
        store,
        graph.spec.config.memory,
        sealer,
        waits,
        children,
    )
    log = logger or engine_logger(f"flowstore.run.{graph.name}")
    debug_log = DebugLog(log, redactor) if debug else None
    attempts: dict[tuple[str, str], int] = {}
    recovered = await restore(store, claim, state, loops, attempts, sealer)
    if claim.resumes:  # taken up again: what its nodes waited for before
        waits.load(await store.read_waits(claim.run.id))
    # Nodes that wait (a time or a signal), and when the earliest of them is due.
    waiting: dict[str, datetime | None] = {}
    signals_awaited: set[str] = set()
    if redactor is not None:
        redactor.learn(state.outputs)
    limit = graph.spec.config.max_concurrency
    if graph.spec.config.strategy == "sequential":
        limit = 1
    running: dict[asyncio.Task[Any], CompiledNode] = {}
    journals: dict[asyncio.Task[Any], NodeJournal] = {}
    # Each names the attempt that died: its tokens in the log were never a node's output.
    changes: list[Change] = [
        NodeChange(
            name,
            NodeStatus.RECOVERED,
            key=loops.key(name),
            attempt=attempts.get((name, loops.key(name))),
        )
        for name in recovered
    ]

    async def stop(ending: RunChange) -> None:
        """End the run (failed or cancelled) after cancelling what runs."""
        await _stop(
            graph, claim, committer, running, changes, loops, ending, measure, metrics, spans
        )

    # `batched`: dependents start before their inputs are committed; commits stay in order.
    batched = graph.spec.config.durability == "batched"
    cancelled = cancelled or asyncio.Event()
    if claim.run.cancel_requested_at is not None:
        cancelled.set()
    # Node tasks and the cancel request wake the scheduler through done callbacks: waiting on
    # every running task at each step would cost time in proportion to the width of the graph.
    wake = asyncio.Event()
    finished: list[asyncio.Task[Any]] = []

    def on_finished(task: asyncio.Task[Any]) -> None:
        finished.append(task)
        wake.set()

    cancel_wait = asyncio.ensure_future(cancelled.wait())
    cancel_wait.add_done_callback(lambda _: wake.set())
    lost_wait = asyncio.ensure_future(lost.wait())
    lost_wait.add_done_callback(lambda _: wake.set())
    # `run_timeout` counts from the run's first start, across recoveries.
    timed_out = asyncio.Event()
    deadline = _deadline(claim, graph)
    timer = None
    if deadline is not None:

        def time_out() -> None:
            timed_out.set()
            wake.set()

        timer = asyncio.get_running_loop().call_later(max(deadline, 0.0), time_out)
    try:
        while True:
            if lost.is_set():
                raise LeaseLost(
                    f"run {claim.run.id}: the lease could not be renewed before it expired; "
                    "stopped here without writing more"
                )
            if timed_out.is_set():
                await committer.drain()
                limit_s = graph.spec.config.run_timeout
                timeout = RunTimeout(
                    f"run {claim.run.id} took longer than its run_timeout of {limit_s:g} s"
                )
                ending = RunChange(RunStatus.FAILED, error=error_value(None, timeout))
                changes.append(error_change(None, "", None, timeout, "failed_run"))
                await stop(ending)
                return RunStatus.FAILED
            if cancelled.is_set():
                await committer.drain()
                ending = RunChange(RunStatus.CANCELLED)
                await stop(ending)
                return RunStatus.CANCELLED
            failure = None
            done_now, finished[:] = finished[:], []
            for task in done_now:
                node = running.pop(task)
                journal = journals.pop(task)
                error = task.exception()
                key = loops.key(node.name)
                if isinstance(error, NodeWaits):  # not over: the node runs again when due
                    waiting[node.name] = error.wake_at
                    if error.signal is not None:
                        signals_awaited.add(error.signal)
                    if error.change is not None:
                        changes.append(error.change)
                    changes.append(NodeChange(node.name, NodeStatus.WAITING, key=key))
                    continue
                if error is None:
                    outcome: NodeOutcome = task.result()
                    if debug_log is not None:
                        debug_log.succeeded(journal, outcome.encoded)
                    ended = measure.node_ends(
                        journal.timing, "succeeded", cache_hit=outcome.cache_hit
                    )
                    metrics += ended[0]
                    spans += ended[1]
                    state.outputs[node.name] = outcome.output
                    state.ended(node.name, NodeStatus.SUCCEEDED)
                    changes.extend(outcome.changes)
                    changes.append(
                        NodeChange(
                            node.name,
                            NodeStatus.SUCCEEDED,
                            key=key,
                            output=outcome.encoded,
                            duration_ms=journal.timing.took_ms(),
                        )
                    )
                    again = loops.next_iteration(node, state.values())
                    if again:
                        state.restart(node.name, again)
                        changes.append(CheckpointChange(loops.checkpoint()))
                else:
                    ended = measure.node_ends(journal.timing, "failed")
                    if debug_log is not None:
                        debug_log.failed(journal, error)
                    metrics += ended[0]
                    spans += ended[1]
                    state.ended(node.name, NodeStatus.FAILED)
                    changes.append(
                        NodeChange(
                            node.name,
                            NodeStatus.FAILED,
                            key=key,
                            error=error_value(node.name, error),
                            duration_ms=journal.timing.took_ms(),
                        )
                    )
                    changes.append(
                        error_change(node.name, key, journal.attempt, error, "failed_run")
                    )
                    failure = failure or (node.name, error)
            if failure is not None:
                await committer.drain()
                node_name, error = failure
                ending = RunChange(RunStatus.FAILED, error=error_value(node_name, error))
                await stop(ending)
                return RunStatus.FAILED
            starting = ready(graph, state, running, limit, changes, attempts, loops)
            if not running and not starting and waiting:
                # Stored `waiting`, with no owner: any worker takes it up when it is due.
                deadlines = [when for when in waiting.values() if when is not None]
                changes.append(
                    RunChange(
                        RunStatus.WAITING,
                        wake_at=min(deadlines, default=None),
                        signals=tuple(sorted(signals_awaited)),
                    )
                )
                await committer.commit(changes, metrics, spans)
                return RunStatus.WAITING
            if not running and not starting:
                changes += _memory_cleared(graph, claim)
                changes.append(RunChange(RunStatus.SUCCEEDED, output=state.output()))
                run_metrics, run_spans = measure.run_ends(RunStatus.SUCCEEDED)
                await committer.commit(changes, metrics + run_metrics, spans + run_spans)
                measure.export()
                return RunStatus.SUCCEEDED
            # `sync`: a node starts only once its start, and every output it reads, is
            # committed. Changes that start no node are queued without waiting: the next start
            # commits after them (in order), and meanwhile more nodes' ends are taken in.
            lookups: dict[str, Any] = {}
            if batched or not starting:
                # A commit that failed (a lost lease) raises here.
                committer.submit(changes, metrics, spans)
            else:
                # The cache entries of the nodes starting come back with their start's commit.
                keys = _cache_keys(graph, starting, store)
                found = await committer.commit(changes, metrics, spans, list(keys.values()))
                lookups = {name: _found(key, found.get(key)) for name, key in keys.items()}
            changes, metrics, spans = [], [], []
            for node, arguments, span_id in starting:
                key = loops.key(node.name)
                context = NodeContext(
                    run_context,
                    node.name,
                    key,
                    attempts[(node.name, key)],
                    log,
                    MemoryStage(claim.run.id, node.name, key, graph.spec.config.memory),
                    loop=_loop_place(loops, state, node.name),
                )
                waits.node_starts(node.name, key)
                items = state.values().get(node.spec.map.over) if node.spec.map else None
                timing = measure.node_starts(node.name, context.key, context.attempt, span_id)
                if debug_log is not None:
                    debug_log.starts(node.name, context.key, context.attempt, arguments)
                journal = NodeJournal(committer.commit_behind, timing, measure, context.attempt)
                task = asyncio.create_task(
                    execute_node(
                        graph,
                        node,
                        arguments,
                        items,
                        context,
                        journal,
                        store=store,
                        outputs=state.outputs,
                        run_child=run_child,
                        resources=resources,
                        lookup=lookups.get(node.name),
                    )
                )
                task.add_done_callback(on_finished)
                running[task] = node
                journals[task] = journal
            if not finished:
                await wake.wait()
            wake.clear()
    except BaseException:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        await committer.settle()
        raise
    finally:
        cancel_wait.cancel()
        lost_wait.cancel()
        if timer is not None:
            timer.cancel()


def _memory_cleared(graph: Graph, claim: Claim) -> list[Change]:
    """At the run's end: delete the messages it wrote, if its workflow says so."""
    return [MemoryClearChange(claim.run.id)] if graph.spec.config.memory.clear_after_run else []


async def _stop(
    graph: Graph,
    claim: Claim,
    committer: Committer,
    running: dict[asyncio.Task[Any], CompiledNode],
    changes: list[Change],
    loops: Loops,
    ending: RunChange,
    measure: RunTelemetry,
    metrics: list[MetricPoint],
    spans: list[Span],
) -> None:
    """Cancel every running node, then end the run (failed or cancelled) in one commit."""
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    changes.extend(
        NodeChange(node.name, NodeStatus.CANCELLED, key=loops.key(node.name))
        for node in running.values()
    )
    running.clear()
    changes += _memory_cleared(graph, claim)
    changes.append(ending)
    run_metrics, run_spans = measure.run_ends(ending.status)
    await committer.commit(changes, metrics + run_metrics, spans + run_spans)
    measure.export()


def _loop_place(loops: Loops, state: RunState, node: str) -> LoopPlace | None:
    """Where `node` is in a loop, for its context; None outside loops."""
    loop = loops.loop_of(node)
    if loop is None:
        return None
    previous = state.previous.get(loop, {})
    return LoopPlace(loop, loops.bodies[loop], loops.iteration[loop], previous)
