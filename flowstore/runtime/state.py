"""What the executor knows about each node of one run, and which nodes can be decided."""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Mapping
from typing import Any

from flowstore.definition.graph import CompiledNode, Graph
from flowstore.store.records import NodeStatus

__all__ = ["RunState"]

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

    def ended(self, name: str, status: NodeStatus) -> None:
        self.status[name] = status
        self.frontier.update(self.graph.nodes[name].downstream)

    def restart(self, body: frozenset[str]) -> None:
        """Make a loop body undecided again, for its next iteration."""
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
