"""The compiler: one checked, frozen `Graph` from a `WorkflowSpec`, whatever wrote the spec.

It resolves callables, node types, subworkflows and input types, derives the edges, and checks
the whole definition, collecting every problem before it raises one `DefinitionError`: unknown
names, duplicate names, unbound or unknown parameters, type mismatches between a producer's
return annotation and a consumer's parameter, cycles not closed by a bounded loop, conditions
that read values not upstream, and nodes that can never run.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from flowstore.definition.expressions import Expression, parse_expression
from flowstore.definition.graph import CompiledNode, Graph
from flowstore.definition.resolution import (
    Compilation,
    Locator,
    check_types,
    resolve_action,
    resolve_call,
    unknown,
    with_type_policies,
)
from flowstore.definition.spec import NodeSpec, WorkflowSpec
from flowstore.errors import DefinitionError

__all__ = ["INPUT_TYPES", "Locator", "compile_spec", "resolve_call"]

INPUT_TYPES: Mapping[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "any": Any,
}
"""The type names a workflow input may have, besides the import path of a Pydantic model."""


def compile_spec(
    spec: WorkflowSpec,
    *,
    functions: Mapping[str, Callable[..., Any]] | None = None,
    workflows: Mapping[str, WorkflowSpec] | None = None,
    locate: Locator | None = None,
    file: str | None = None,
) -> Graph:
    """Compile a spec into a `Graph`.

    Args:
        spec: The definition.
        functions: Functions by import path, used before importing (the Python API passes the
            functions it decorated, so they need not be importable to compile).
        workflows: Workflows a subworkflow node may run, by name.
        locate: Maps spec paths to file positions, for DSL definitions.
        file: The definition file, named in problems.

    Raises:
        DefinitionError: With every problem found.
    """
    job = Compilation(spec, functions or {}, workflows or {}, locate, file)
    inputs, input_model = _input_types(job)
    indexes: dict[str, int] = {}
    for index, node in enumerate(spec.nodes):
        if node.name in indexes:
            job.report(
                f"duplicate node name {node.name!r} (first at node {indexes[node.name] + 1})",
                ("nodes", index, "name"),
                node=node.name,
                field="name",
            )
        elif node.name in inputs:
            job.report(
                f"node {node.name!r} has the name of a workflow input: names are shared by "
                "inputs and nodes, rename one",
                ("nodes", index, "name"),
                node=node.name,
                field="name",
            )
        else:
            indexes[node.name] = index
    resources = frozenset(spec.resources)
    for position, resource in enumerate(spec.resources):
        if resource in inputs or resource in indexes:
            job.report(
                f"resource {resource!r} has the name of a workflow input or node: names are "
                "shared, rename one",
                ("resources", position),
                field="resources",
            )
    key = spec.config.queue_key
    if key is not None and (spec.config.queue is None or key not in inputs):
        job.report(
            f"config.queue_key {key!r} must name a workflow input "
            f"({', '.join(map(repr, sorted(inputs))) or 'none declared'}) whose value is each "
            "run's key in config.queue"
            + ("" if spec.config.queue is not None else ", and config.queue must name the queue"),
            ("config", "queue_key"),
            field="config.queue_key",
        )
    upstream, routers = _edges(job, indexes, {**inputs, **dict.fromkeys(resources)})
    order = _topological_order(job, indexes, upstream)
    downstream: dict[str, list[str]] = {name: [] for name in indexes}
    for name in order:
        for parent in upstream[name]:
            downstream[parent].append(name)
    topology = _Topology(
        upstream, downstream, routers, {name: place for place, name in enumerate(order)}
    )
    nodes = {name: _compile_node(job, indexes[name], inputs, topology) for name in order}
    check_types(job, nodes, indexes)
    output = _output(job, indexes, upstream)
    if job.problems:
        raise DefinitionError(job.problems)
    return Graph(
        spec=spec,
        hash=spec.digest(),
        nodes=MappingProxyType(nodes),
        order=tuple(order),
        inputs=MappingProxyType(inputs),
        output=output,
        input_model=input_model,
        resources=resources,
        signal_models=MappingProxyType(_signal_models(job)),
    )


def _signal_models(job: Compilation) -> dict[str, type[BaseModel]]:
    models: dict[str, type[BaseModel]] = {}
    for name, path in job.spec.signals.items():
        try:
            found = resolve_call(path, job.functions)
        except LookupError as error:
            job.report(str(error), ("signals", name), field=f"signals.{name}")
            continue
        if not (isinstance(found, type) and issubclass(found, BaseModel)):
            job.report(
                f"{path!r} is not a Pydantic model", ("signals", name), field=f"signals.{name}"
            )
            continue
        models[name] = found
    return models


def _input_types(job: Compilation) -> tuple[dict[str, Any], type[BaseModel] | None]:
    types: dict[str, Any] = {}
    input_model: type[BaseModel] | None = None
    for name, type_name in job.spec.inputs.items():
        if type_name in INPUT_TYPES:
            types[name] = INPUT_TYPES[type_name]
            continue
        try:
            found = resolve_call(type_name, job.functions) if ":" in type_name else None
        except LookupError as error:
            job.report(str(error), ("inputs", name), field=f"inputs.{name}")
            types[name] = Any  # still an input: no second problem where it is used
            continue
        if not (isinstance(found, type) and issubclass(found, BaseModel)):
            job.report(
                f"unknown type {type_name!r} for input {name!r}: use one of "
                f"{', '.join(INPUT_TYPES)} or the import path of a Pydantic model",
                ("inputs", name),
                field=f"inputs.{name}",
            )
            types[name] = Any
            continue
        types[name] = found
    if job.spec.input_model is not None:
        try:
            model = resolve_call(job.spec.input_model, job.functions)
        except LookupError as error:
            job.report(str(error), ("input_model",), field="input_model")
        else:
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                job.report(
                    f"{job.spec.input_model!r} is not a Pydantic model",
                    ("input_model",),
                    field="input_model",
                )
            else:
                input_model = model
                for name, info in model.model_fields.items():
                    types.setdefault(name, info.annotation)
    return types, input_model


def _edges(
    job: Compilation, indexes: Mapping[str, int], inputs: Mapping[str, Any]
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """Each node's upstream nodes, and each route's router; unknown names are reported."""
    routers: dict[str, str] = {}
    for name, index in indexes.items():
        for route in job.spec.nodes[index].routes or ():
            if route == name:
                job.report(
                    f"router {name!r} lists itself as a route",
                    ("nodes", index, "routes"),
                    node=name,
                    field="routes",
                )
            elif route in routers:
                job.report(
                    f"node {route!r} is a route of both {routers[route]!r} and {name!r}",
                    ("nodes", index, "routes"),
                    node=name,
                    field="routes",
                )
            elif route not in indexes:
                job.report(
                    unknown("route", route, indexes),
                    ("nodes", index, "routes"),
                    node=name,
                    field="routes",
                )
            else:
                routers[route] = name
    upstream: dict[str, tuple[str, ...]] = {}
    for name, index in indexes.items():
        node = job.spec.nodes[index]
        parents: list[str] = []
        item = node.map.item if node.map is not None else None
        for param, source in node.inputs.items():
            if source == item:
                continue  # each item of the map, not a node's output or an input
            if source in indexes:
                parents.append(source)
            elif source not in inputs:
                job.report(
                    unknown("input source", source, indexes, inputs),
                    ("nodes", index, "inputs", param),
                    node=name,
                    field=f"inputs.{param}",
                )
        for before in node.after:
            if before in indexes:
                parents.append(before)
            else:
                job.report(
                    unknown("node", before, indexes),
                    ("nodes", index, "after"),
                    node=name,
                    field="after",
                )
        if node.map is not None:
            if node.map.over in indexes:
                parents.append(node.map.over)
            elif node.map.over not in inputs:
                job.report(
                    unknown("map source", node.map.over, indexes, inputs),
                    ("nodes", index, "map", "over"),
                    node=name,
                    field="map.over",
                )
        if name in routers:
            parents.append(routers[name])
        if name in parents:
            job.report(
                f"node {name!r} depends on itself (use 'loop' to repeat a node)",
                ("nodes", index),
                node=name,
            )
            parents = [parent for parent in parents if parent != name]
        upstream[name] = tuple(dict.fromkeys(parents))
    return upstream, routers


def _topological_order(
    job: Compilation, indexes: Mapping[str, int], upstream: Mapping[str, tuple[str, ...]]
) -> list[str]:
    """Kahn's algorithm, ties in written order; a cycle is reported with its path."""
    waiting = {name: len(parents) for name, parents in upstream.items()}
    children: dict[str, list[str]] = {name: [] for name in upstream}
    for name, parents in upstream.items():
        for parent in parents:
            children[parent].append(name)
    ready = [(indexes[name], name) for name in upstream if waiting[name] == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, name = heapq.heappop(ready)
        order.append(name)
        for child in children[name]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (indexes[child], child))
    if len(order) < len(upstream):
        stuck = {name for name, count in waiting.items() if count > 0}
        cycle = _find_cycle(stuck, upstream)
        job.report(
            f"cycle {' -> '.join(cycle)} has no loop bound: close it with "
            "'loop: {back_to, while, max_iterations}' on its last node instead of an edge",
            ("nodes", indexes[cycle[0]]),
            node=cycle[0],
        )
        order.extend(sorted(stuck, key=indexes.__getitem__))
    return order


def _find_cycle(stuck: set[str], upstream: Mapping[str, tuple[str, ...]]) -> list[str]:
    start = min(stuck)
    path = [start]
    seen = {start: 0}
    current = start
    while True:
        current = next(parent for parent in upstream[current] if parent in stuck)
        if current in seen:
            cycle = path[seen[current] :]
            cycle.reverse()
            return [*cycle, cycle[0]]
        seen[current] = len(path)
        path.append(current)


@dataclass(frozen=True, slots=True)
class _Topology:
    upstream: Mapping[str, tuple[str, ...]]
    downstream: Mapping[str, list[str]]
    routers: Mapping[str, str]
    position: Mapping[str, int]  # in topological order

    def is_upstream(self, candidate: str, node: str) -> bool:
        """Whether `candidate` must end before `node` starts.

        Searches upward from `node`, but never past nodes ordered before `candidate`, so
        the usual case (a condition reading a nearby node) costs a few steps, not the graph.
        """
        floor = self.position.get(candidate)
        if floor is None or floor >= self.position[node]:
            return False
        stack, seen = [node], {node}
        while stack:
            for parent in self.upstream[stack.pop()]:
                if parent == candidate:
                    return True
                if parent not in seen and self.position[parent] > floor:
                    seen.add(parent)
                    stack.append(parent)
        return False


def _compile_node(
    job: Compilation, index: int, inputs: Mapping[str, Any], topology: _Topology
) -> CompiledNode:
    node = job.spec.nodes[index]
    path: tuple[str | int, ...] = ("nodes", index)

    def visible(name: str) -> bool:
        return name in inputs or topology.is_upstream(name, node.name)

    when = _condition(job, node, node.when, visible, (*path, "when"), "when")
    loop_while = None
    if node.loop is not None:
        loop_path = (*path, "loop")
        back_to = node.loop.back_to
        if back_to != node.name and not topology.is_upstream(back_to, node.name):
            job.report(
                f"loop goes back to {back_to!r}, which is not upstream of "
                f"{node.name!r}: the loop could never reach it",
                (*loop_path, "back_to"),
                node=node.name,
                field="loop.back_to",
            )

        def visible_in_loop(name: str) -> bool:
            return name == node.name or visible(name)

        loop_while = _condition(
            job, node, node.loop.while_, visible_in_loop, (*loop_path, "while"), "loop.while"
        )
    if node.fallback is not None and node.fallback.node is not None:
        if node.fallback.node == node.name:
            job.report(
                "a node cannot be its own fallback",
                (*path, "fallback", "node"),
                node=node.name,
                field="fallback.node",
            )
        elif node.fallback.node not in topology.position:
            job.report(
                unknown("fallback node", node.fallback.node, topology.position),
                (*path, "fallback", "node"),
                node=node.name,
                field="fallback.node",
            )
        elif not topology.is_upstream(node.fallback.node, node.name):
            job.report(
                f"fallback node {node.fallback.node!r} is not upstream of {node.name!r}: its "
                f"output would not exist when {node.name!r} fails (list it in 'after')",
                (*path, "fallback", "node"),
                node=node.name,
                field="fallback.node",
            )
    fallback_function = cache_key_function = None
    if node.fallback is not None and node.fallback.call is not None:
        fallback_function = _callable(job, node.fallback.call, path, node.name, "fallback.call")
    if node.cache is not None and node.cache.key is not None:
        cache_key_function = _callable(job, node.cache.key, path, node.name, "cache.key")
    function, style, params, context_param, returns = resolve_action(job, index, inputs)
    return CompiledNode(
        spec=with_type_policies(node),
        function=function,
        style=style,
        params=params,
        context_param=context_param,
        returns=returns,
        upstream=topology.upstream[node.name],
        downstream=tuple(topology.downstream[node.name]),
        when=when,
        loop_while=loop_while,
        routed_by=topology.routers.get(node.name),
        fallback_function=fallback_function,
        cache_key_function=cache_key_function,
        cache_digest=None if node.cache is None else _digest(node),
    )


def _digest(node: NodeSpec) -> str:
    canonical = node.model_dump_json(by_alias=True, exclude_defaults=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _callable(
    job: Compilation, call: str, path: tuple[str | int, ...], node: str, field: str
) -> Callable[..., Any] | None:
    """The callable at import path `call`, or None with the problem reported."""
    try:
        found = resolve_call(call, job.functions)
    except LookupError as error:
        job.report(str(error), (*path, *field.split(".")), node=node, field=field)
        return None
    if not callable(found):
        job.report(f"{call!r} is not callable", (*path, *field.split(".")), node=node, field=field)
        return None
    function: Callable[..., Any] = found
    return function


def _condition(
    job: Compilation,
    node: NodeSpec,
    source: str | None,
    visible: Callable[[str], bool],
    path: tuple[str | int, ...],
    field_name: str,
) -> Expression | None:
    if source is None:
        return None
    expression = parse_expression(source)  # the spec validated it already
    for name in sorted(name for name in expression.names if not visible(name)):
        job.report(
            f"condition reads {name!r}, which is not a workflow input or a node upstream of "
            f"{node.name!r}",
            path,
            node=node.name,
            field=field_name,
        )
    if not expression.names:
        try:
            constant = expression.evaluate({})
        except Exception:  # a constant that fails to evaluate fails every run: say so below
            constant = False
        if not constant:
            job.report(
                f"condition {source!r} is never true: node {node.name!r} could never run",
                path,
                node=node.name,
                field=field_name,
            )
    return expression


def _output(
    job: Compilation, indexes: Mapping[str, int], upstream: Mapping[str, tuple[str, ...]]
) -> str | None:
    if job.spec.output is not None:
        if job.spec.output not in indexes:
            job.report(
                unknown("output node", job.spec.output, indexes), ("output",), field="output"
            )
        return job.spec.output
    depended_on = {parent for parents in upstream.values() for parent in parents}
    sinks = [name for name in indexes if name not in depended_on]
    return sinks[0] if len(sinks) == 1 else None
