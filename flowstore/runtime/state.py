"""What the executor knows about each node of one run, and which nodes can be decided.

`restore` loads it from what a run committed before (a resumed or recovered run); `ready`
decides every node that can be, and says which to start.
"""

from __future__ import annotations

import asyncio
from collections import ChainMap
from collections.abc import Mapping
from typing import Any

from flowstore.definition.graph import CompiledNode, Graph
from flowstore.definition.validation import restored_output
from flowstore.runtime.loops import Loops
from flowstore.runtime.sealing import Sealer
from flowstore.runtime.telemetry import new_span_id
from flowstore.store.protocol import RunLog
from flowstore.store.records import Change, Claim, NodeChange, NodeStatus

__all__ = ["RunState", "ready", "restore"]

_ENDED = frozenset({NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED})


class RunState:
    """What is known about each node of one run."""

    def __init__(self, graph: Graph, inputs: Mapping[str, Any]) -> None:
        self.graph = graph
        self.inputs = dict(inputs)
        self.status: dict[str, NodeStatus] = {}
        self.outputs: dict[str, Any] = {}
        # Nodes that may have become decidable: all at first, then the children of each node
        # that ends. Keeps each scheduling step proportional to what changed, not to the graph.
        self.frontier: set[str] = set(graph.order)
        self.position = {name: place for place, name in enumerate(graph.order)}
        # Per loop, the outputs its body gave in the previous iteration (`NodeContext.previous`).
        self.previous: dict[str, dict[str, Any]] = {}

    def ended(self, name: str, status: NodeStatus) -> None:
        self.status[name] = status
        self.frontier.update(self.graph.nodes[name].downstream)

    def restart(self, loop: str, body: frozenset[str]) -> None:
        """Make a loop body undecided again, for its next iteration, keeping the outputs it
        gave in the one that ended."""
        self.previous[loop] = {
            name: self.outputs[name]
            for name in body
            if self.status.get(name) is NodeStatus.SUCCEEDED and name in self.outputs
        }
        for name in body:
            self.status.pop(name, None)
        self.frontier.update(body)

    def values(self) -> ChainMap[str, Any]:
        """Node outputs and workflow inputs by name, without copying either."""
        return ChainMap(self.outputs, self.inputs)

    def decide(self, node: CompiledNode) -> bool | None:
        """True to run the node, False to skip it, None while something upstream runs."""
        upstream = [self.status.get(name) for name in node.upstream]
        if any(status not in _ENDED for status in upstream):
            return None
        if node.routed_by is not None:
            if self.status[node.routed_by] is not NodeStatus.SUCCEEDED:
                return False
            chosen = self.outputs[node.routed_by]
            names = [chosen] if isinstance(chosen, str) else list(chosen or [])
            if node.name not in names:
                return False
        succeeded = [status is NodeStatus.SUCCEEDED for status in upstream]
        join = node.spec.join
        if join == "all" and not all(succeeded):
            return False
        if join == "any" and upstream and not any(succeeded):
            return False
        if node.when is not None:
            return bool(node.when.evaluate(self.values()))
        return True

    def arguments(self, node: CompiledNode) -> dict[str, Any]:
        arguments = {}
        for param in node.params:
            source = param.source
            if source is None or source in self.graph.resources:
                continue  # a map item, or a shared resource given at the call
            if source in self.outputs:
                arguments[param.name] = self.outputs[source]
            elif source in self.inputs:
                arguments[param.name] = self.inputs[source]
            elif not param.has_default:
                arguments[param.name] = None
        return arguments

    def output(self) -> Any:
        if self.graph.output is not None:
            return self.outputs.get(self.graph.output)
        ends = [name for name in self.graph.order if not self.graph.nodes[name].downstream]
        return {name: self.outputs.get(name) for name in ends}


async def restore(
    store: RunLog,
    claim: Claim,
    state: RunState,
    loops: Loops,
    attempts: dict[tuple[str, str], int],
    sealer: Sealer | None = None,
) -> list[str]:
    """Load what the run committed before; return the nodes that were running (recovered).
    Sealed secret fields are opened with `sealer`.

    `attempts` gets each execution's attempt count, so a recovered node's attempts (and its
    retry policy's budget) carry on from where the crash left them.
    """
    if not claim.resumes:
        return []
    checkpoint = await store.read_checkpoint(claim.run.id)
    loops.restore(checkpoint.state if checkpoint is not None else None)
    recovered = []
    for execution in await store.read_node_executions(claim.run.id):
        if execution.node not in state.graph.nodes:
            continue
        if execution.key != loops.key(execution.node):  # another iteration's execution
            loop = loops.loop_of(execution.node)
            if (
                loop is not None
                and execution.key == loops.previous_key(loop)
                and execution.status is NodeStatus.SUCCEEDED
            ):
                output = execution.output if sealer is None else sealer.open(execution.output)
                node = state.graph.nodes[execution.node]
                previous = state.previous.setdefault(loop, {})
                previous[execution.node] = restored_output(state.graph, node, output)
            continue
        attempts[(execution.node, execution.key)] = execution.attempt
        if execution.status is NodeStatus.SUCCEEDED:
            state.status[execution.node] = NodeStatus.SUCCEEDED
            node = state.graph.nodes[execution.node]
            # As it was live: rebuilt by its annotation (a datetime, a set, a model, NaN).
            output = execution.output if sealer is None else sealer.open(execution.output)
            state.outputs[execution.node] = restored_output(state.graph, node, output)
        elif execution.status is NodeStatus.SKIPPED:
            state.status[execution.node] = NodeStatus.SKIPPED
        elif execution.status in (NodeStatus.RUNNING, NodeStatus.RECOVERED):
            recovered.append(execution.node)
        elif execution.status is NodeStatus.WAITING:
            # Its wait is over (or due): it runs again from its start, the same attempt.
            attempts[(execution.node, execution.key)] = execution.attempt - 1
    return recovered


def ready(
    graph: Graph,
    state: RunState,
    running: Mapping[asyncio.Task[Any], CompiledNode],
    limit: int | None,
    changes: list[Change],
    attempts: dict[tuple[str, str], int],
    loops: Loops,
) -> list[tuple[CompiledNode, dict[str, Any], str]]:
    """Decide every node that can be decided; return those to start (within the limit)."""
    starting: list[tuple[CompiledNode, dict[str, Any], str]] = []
    busy = {node.name for node in running.values()}
    progress = True
    while progress:
        progress = False
        for name in sorted(state.frontier, key=state.position.__getitem__):
            if name in state.status or name in busy:
                state.frontier.discard(name)
                continue
            node = graph.nodes[name]
            decision = state.decide(node)
            if decision is None:
                state.frontier.discard(name)  # back when something upstream ends
                continue
            if decision is False:
                state.frontier.discard(name)
                state.ended(name, NodeStatus.SKIPPED)
                changes.append(NodeChange(name, NodeStatus.SKIPPED, key=loops.key(name)))
                progress = True
                continue
            if limit is not None and len(busy) >= limit:
                continue  # stays in the frontier for the next step
            state.frontier.discard(name)
            arguments = state.arguments(node)
            key = loops.key(name)
            attempt = attempts[(name, key)] = attempts.get((name, key), 0) + 1
            span_id = new_span_id()
            changes.append(
                NodeChange(
                    name,
                    NodeStatus.RUNNING,
                    key=key,
                    attempt=attempt,
                    input=arguments,
                    span_id=span_id,
                )
            )
            busy.add(name)
            starting.append((node, arguments, span_id))
    return starting
