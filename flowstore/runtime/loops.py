"""Loops at run time: which nodes a loop repeats, and which iteration each node is in.

A node with `loop: {back_to, while, max_iterations}` closes a loop over its body: every node
between `back_to` and itself. When it succeeds and its `while` condition holds (and the bound
is not reached), the body runs again as the next iteration. Each iteration's executions are
stored under their own key (`""` for the first, `i1`, `i2`, ... after), and the iteration
counts are checkpointed with the batch that starts an iteration, so a resumed run carries on
in the right one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowstore.definition.graph import CompiledNode, Graph
from flowstore.errors import ExecutionError

__all__ = ["Loops", "closure"]


def closure(graph: Graph, start: str, direction: str) -> set[str]:
    """`start` and every node downstream (`down`) or upstream (`up`) of it."""
    found, stack = {start}, [start]
    while stack:
        node = graph.nodes[stack.pop()]
        for name in node.upstream if direction == "up" else node.downstream:
            if name not in found:
                found.add(name)
                stack.append(name)
    return found


class Loops:
    """The loops of one run and the iteration each is in."""

    def __init__(self, graph: Graph) -> None:
        self.bodies: dict[str, frozenset[str]] = {}
        self._loop_of: dict[str, str] = {}
        self.iteration: dict[str, int] = {}
        for name, node in graph.nodes.items():
            if node.spec.loop is None:
                continue
            body = closure(graph, node.spec.loop.back_to, "down") & closure(graph, name, "up")
            for member in body:
                if member in self._loop_of:
                    raise ExecutionError(
                        f"workflow {graph.name!r}: node {member!r} is in the loops of both "
                        f"{self._loop_of[member]!r} and {name!r}; nested or overlapping loops "
                        "are not executed by this version of flowstore"
                    )
                self._loop_of[member] = name
            self.bodies[name] = frozenset(body)
            self.iteration[name] = 0

    def loop_of(self, node: str) -> str | None:
        """The loop `node` is in (the node that closes it), if any."""
        return self._loop_of.get(node)

    def previous_key(self, loop: str) -> str | None:
        """The execution key of the loop's previous iteration; None in its first."""
        iteration = self.iteration.get(loop, 0)
        if iteration == 0:
            return None
        return f"i{iteration - 1}" if iteration > 1 else ""

    def key(self, node: str) -> str:
        """The execution key of the node's current iteration."""
        loop = self._loop_of.get(node)
        iteration = self.iteration.get(loop, 0) if loop is not None else 0
        return f"i{iteration}" if iteration else ""

    def next_iteration(self, node: CompiledNode, values: Mapping[str, Any]) -> frozenset[str]:
        """After `node` succeeded: the body to run again, or nothing when its loop is done."""
        loop = node.spec.loop
        if loop is None or node.loop_while is None:
            return frozenset()
        if self.iteration[node.name] + 1 >= loop.max_iterations:
            return frozenset()
        if not node.loop_while.evaluate(values):
            return frozenset()
        self.iteration[node.name] += 1
        return self.bodies[node.name]

    def checkpoint(self) -> dict[str, Any]:
        """What a resumed run needs to know: the iteration of every loop."""
        return {"loops": dict(self.iteration)}

    def restore(self, checkpoint: Mapping[str, Any] | None) -> None:
        """Take up the iterations of a checkpoint."""
        for name, iteration in ((checkpoint or {}).get("loops") or {}).items():
            if name in self.iteration:
                self.iteration[name] = int(iteration)
