"""The shape of a workflow: which node comes after which, and its loops, from a compiled
`Graph` or from a definition alone (`WorkflowSpec`, as a run stores it).

A process without the workflow's code (a `Client`, the web inspector) cannot compile a
definition, whose nodes name functions it cannot import; it still knows the definition's
edges, the same ones the compiler finds: a node comes after the nodes whose outputs it
takes, those it lists in `after`, the node its `map` goes over, and the router it is a
route of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowstore.definition.graph import Graph
    from flowstore.definition.spec import WorkflowSpec

__all__ = ["Shape"]


@dataclass(frozen=True, slots=True)
class Shape:
    """Each node's upstream nodes (with whether the edge is a route), and each loop's node
    with the node it goes back to. Nodes in definition order."""

    upstream: Mapping[str, tuple[tuple[str, bool], ...]]
    loops: Mapping[str, str]

    @classmethod
    def of_graph(cls, graph: Graph) -> Shape:
        return cls(
            {
                name: tuple((parent, node.routed_by == parent) for parent in node.upstream)
                for name, node in graph.nodes.items()
            },
            {
                name: node.spec.loop.back_to
                for name, node in graph.nodes.items()
                if node.spec.loop is not None
            },
        )

    @classmethod
    def of_spec(cls, spec: WorkflowSpec) -> Shape:
        names = {node.name for node in spec.nodes}
        upstream: dict[str, list[tuple[str, bool]]] = {node.name: [] for node in spec.nodes}
        for node in spec.nodes:
            item = node.map.item if node.map is not None else None
            sources = [source for source in node.inputs.values() if source != item]
            sources += node.after
            if node.map is not None:
                sources.append(node.map.over)
            for source in dict.fromkeys(sources):
                if source in names and source != node.name:
                    upstream[node.name].append((source, False))
            for route in node.routes or ():
                if route in names and route != node.name:
                    upstream[route].append((node.name, True))
        loops = {
            node.name: node.loop.back_to
            for node in spec.nodes
            if node.loop is not None and node.loop.back_to in names
        }
        return cls({name: tuple(edges) for name, edges in upstream.items()}, loops)

    def closure(self, start: str, direction: str) -> set[str]:
        """`start` and every node downstream (`down`) or upstream (`up`) of it."""
        following: dict[str, list[str]] = {name: [] for name in self.upstream}
        for name, edges in self.upstream.items():
            for parent, _ in edges:
                if direction == "down":
                    following[parent].append(name)
                else:
                    following[name].append(parent)
        found, stack = {start}, [start]
        while stack:
            for name in following[stack.pop()]:
                if name not in found:
                    found.add(name)
                    stack.append(name)
        return found

    def loop_bodies(self) -> dict[str, frozenset[str]]:
        """Each loop's body: the nodes from the one it goes back to down to the loop's own."""
        return {
            loop: frozenset(self.closure(back_to, "down") & self.closure(loop, "up"))
            for loop, back_to in self.loops.items()
        }
