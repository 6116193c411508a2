"""The compiled graph: a validated, frozen workflow that the executor runs."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from pydantic import BaseModel

from flowstore.definition.expressions import Expression
from flowstore.definition.spec import NodeSpec, WorkflowSpec

__all__ = ["CompiledNode", "Graph", "Param"]

CallStyle = Literal["async", "async_generator", "sync", "sync_generator"]


@dataclass(frozen=True, slots=True)
class Param:
    """A parameter of a node's function and what fills it.

    Attributes:
        name: The parameter's name.
        source: The workflow input or node it receives; None for the context or a map item.
        annotation: Its type annotation, or None when it has none.
        has_default: Whether it may be left unbound.
    """

    name: str
    source: str | None
    annotation: Any
    has_default: bool


@dataclass(frozen=True, slots=True)
class CompiledNode:
    """A node, resolved and checked.

    Attributes:
        spec: The node as declared.
        function: The function to call (for `call` and custom node types); None for a
            subworkflow node.
        style: How to call it: awaited, iterated as a token stream, or in a worker thread.
        params: The parameters filled from inputs and upstream outputs.
        context_param: The parameter that receives the `NodeContext`, if any.
        returns: The return annotation, or None.
        upstream: Nodes that must end first (data inputs, `after`, the router it is a route of).
        downstream: Nodes that depend on this one.
        when: The parsed condition.
        loop_while: The parsed loop condition.
        routed_by: The router this node is a route of.
        fallback_function: The callable of a `fallback.call`, imported.
        cache_key_function: The callable of a `cache.key`, imported.
        cache_digest: For a node with a cache policy, the digest of its definition (part of
            its cache keys, so a changed node does not read its old entries).
    """

    spec: NodeSpec
    function: Callable[..., Any] | None
    style: CallStyle | None
    params: tuple[Param, ...]
    context_param: str | None
    returns: Any
    upstream: tuple[str, ...]
    downstream: tuple[str, ...]
    when: Expression | None
    loop_while: Expression | None
    routed_by: str | None
    fallback_function: Callable[..., Any] | None = None
    cache_key_function: Callable[..., Any] | None = None
    cache_digest: str | None = None

    @property
    def name(self) -> str:
        """The node's name."""
        return self.spec.name


@dataclass(frozen=True, slots=True, eq=False)
class Graph:
    """A workflow compiled from Python or a DSL file: frozen and checked.

    Attributes:
        spec: The definition it was compiled from.
        hash: The stable hash of `spec` (stored with every run).
        nodes: The nodes by name.
        order: A topological order of the node names (stable: ties keep the written order).
        inputs: Workflow input name to its type.
        output: The node whose output is the run's output.
        input_model: The Pydantic model that validates all inputs at once, if declared.
        resources: The shared resources its nodes receive from the engine, by name.
        signal_models: The model each declared signal's payload must match, by signal name.
    """

    spec: WorkflowSpec
    hash: str
    nodes: Mapping[str, CompiledNode]
    order: tuple[str, ...]
    inputs: Mapping[str, Any]
    output: str | None
    input_model: type[BaseModel] | None = None
    resources: frozenset[str] = frozenset()
    signal_models: Mapping[str, type[BaseModel]] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def name(self) -> str:
        """The workflow's name."""
        return self.spec.name

    @property
    def sources(self) -> tuple[str, ...]:
        """The nodes that wait for no other node."""
        return tuple(name for name in self.order if not self.nodes[name].upstream)

    def stored_spec(self) -> dict[str, Any]:
        """The spec as JSON data, as the store keeps it with each run: dumped once per graph
        (a 500-node spec takes milliseconds), so not to be changed by the caller."""
        return _stored_spec(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Graph) and other.hash == self.hash

    def __hash__(self) -> int:
        return hash(self.hash)


@functools.lru_cache(maxsize=256)
def _stored_spec(graph: Graph) -> dict[str, Any]:
    return graph.spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
