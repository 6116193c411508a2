"""The compiler: one checked, frozen `Graph` from a `WorkflowSpec`, whatever wrote the spec.

It resolves callables, node types, subworkflows and input types, derives the edges, and checks
the whole definition, collecting every problem before it raises one `DefinitionError`: unknown
names, duplicate names, unbound or unknown parameters, type mismatches between a producer's
return annotation and a consumer's parameter, cycles not closed by a bounded loop, conditions
that read values not upstream, and nodes that can never run.
"""

from __future__ import annotations

import heapq
import importlib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError

from flowstore.definition.expressions import Expression, parse_expression
from flowstore.definition.graph import CallStyle, CompiledNode, Graph, Param
from flowstore.definition.node_types import find_node_type, registered_node_types
from flowstore.definition.spec import NodeSpec, WorkflowSpec
from flowstore.errors import DefinitionError, Problem

__all__ = ["INPUT_TYPES", "Locator", "compile_spec", "resolve_call"]

Locator = Callable[[tuple[str | int, ...]], tuple[int, int] | None]
"""Maps a path inside the spec, such as ("nodes", 2, "when"), to a (line, column) in a file."""

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

_CONTEXT_ANNOTATION = "NodeContext"


def resolve_call(path: str, functions: Mapping[str, Callable[..., Any]] | None = None) -> Any:
    """The object at an import path `package.module:attribute.path`.

    Raises:
        LookupError: The module cannot be imported or has no such attribute (the message
            says which).
    """
    if functions and path in functions:
        return functions[path]
    module_name, _, attribute = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise LookupError(f"cannot import module {module_name!r}: {error}") from None
    except Exception as error:  # the module's own code failed while importing
        raise LookupError(
            f"importing module {module_name!r} failed: {type(error).__name__}: {error}"
        ) from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise LookupError(f"module {module_name!r} has no {attribute!r}")
        found = getattr(found, part)
    return found


@dataclass
class _Compilation:
    spec: WorkflowSpec
    functions: Mapping[str, Callable[..., Any]]
    workflows: Mapping[str, WorkflowSpec]
    locate: Locator | None
    file: str | None
    problems: list[Problem] = field(default_factory=list)

    def report(
        self,
        message: str,
        path: tuple[str | int, ...] = (),
        *,
        node: str | None = None,
        field: str | None = None,
    ) -> None:
        position = self.locate(path) if self.locate is not None and path else None
        line, column = position if position is not None else (None, None)
        self.problems.append(
            Problem(
                message,
                workflow=self.spec.name,
                node=node,
                field=field,
                file=self.file,
                line=line,
                column=column,
            )
        )


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
    job = _Compilation(spec, functions or {}, workflows or {}, locate, file)
    inputs = _input_types(job)
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
    upstream = _edges(job, indexes, inputs)
    order = _topological_order(job, indexes, upstream)
    ancestors = _ancestors(order, upstream)
    nodes = {
        spec.nodes[index].name: _compile_node(job, index, inputs, upstream, ancestors)
        for index in indexes.values()
    }
    _check_types(job, nodes, indexes)
    output = _output(job, indexes, upstream)
    if job.problems:
        raise DefinitionError(job.problems)
    downstream: dict[str, list[str]] = {name: [] for name in indexes}
    for name in order:
        for parent in upstream[name]:
            downstream[parent].append(name)
    compiled = {name: _with_downstream(nodes[name], tuple(downstream[name])) for name in order}
    return Graph(
        spec=spec,
        hash=spec.digest(),
        nodes=MappingProxyType(compiled),
        order=tuple(order),
        inputs=MappingProxyType(inputs),
        output=output,
    )


def _with_downstream(node: CompiledNode, downstream: tuple[str, ...]) -> CompiledNode:
    return CompiledNode(
        spec=node.spec,
        function=node.function,
        style=node.style,
        params=node.params,
        context_param=node.context_param,
        returns=node.returns,
        upstream=node.upstream,
        downstream=downstream,
        when=node.when,
        loop_while=node.loop_while,
        routed_by=node.routed_by,
    )


def _input_types(job: _Compilation) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for name, type_name in job.spec.inputs.items():
        if type_name in INPUT_TYPES:
            types[name] = INPUT_TYPES[type_name]
            continue
        try:
            found = resolve_call(type_name, job.functions) if ":" in type_name else None
        except LookupError as error:
            job.report(str(error), ("inputs", name), field=f"inputs.{name}")
            continue
        if not (isinstance(found, type) and issubclass(found, BaseModel)):
            job.report(
                f"unknown type {type_name!r} for input {name!r}: use one of "
                f"{', '.join(INPUT_TYPES)} or the import path of a Pydantic model",
                ("inputs", name),
                field=f"inputs.{name}",
            )
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
                for name, info in model.model_fields.items():
                    types.setdefault(name, info.annotation)
    return types


def _edges(
    job: _Compilation, indexes: Mapping[str, int], inputs: Mapping[str, Any]
) -> dict[str, tuple[str, ...]]:
    """Each node's upstream nodes, reporting every reference to an unknown name."""
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
                    _unknown("route", route, indexes),
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
        for param, source in node.inputs.items():
            if source in indexes:
                parents.append(source)
            elif source not in inputs:
                job.report(
                    _unknown("input source", source, indexes, inputs),
                    ("nodes", index, "inputs", param),
                    node=name,
                    field=f"inputs.{param}",
                )
        for before in node.after:
            if before in indexes:
                parents.append(before)
            else:
                job.report(
                    _unknown("node", before, indexes),
                    ("nodes", index, "after"),
                    node=name,
                    field="after",
                )
        if node.map is not None:
            if node.map.over in indexes:
                parents.append(node.map.over)
            elif node.map.over not in inputs:
                job.report(
                    _unknown("map source", node.map.over, indexes, inputs),
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
    return upstream


def _unknown(what: str, name: str, nodes: Iterable[str], inputs: Iterable[str] = ()) -> str:
    known = sorted({*nodes, *inputs})
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return f"unknown {what} {name!r} (known: {shown or 'none'})"


def _topological_order(
    job: _Compilation, indexes: Mapping[str, int], upstream: Mapping[str, tuple[str, ...]]
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


def _ancestors(
    order: list[str], upstream: Mapping[str, tuple[str, ...]]
) -> dict[str, frozenset[str]]:
    ancestors: dict[str, frozenset[str]] = {}
    for name in order:
        found: set[str] = set()
        for parent in upstream[name]:
            found.add(parent)
            found |= ancestors.get(parent, frozenset())
        ancestors[name] = frozenset(found)
    return ancestors


def _compile_node(
    job: _Compilation,
    index: int,
    inputs: Mapping[str, Any],
    upstream: Mapping[str, tuple[str, ...]],
    ancestors: Mapping[str, frozenset[str]],
) -> CompiledNode:
    node = job.spec.nodes[index]
    path: tuple[str | int, ...] = ("nodes", index)
    visible = set(inputs) | ancestors[node.name]
    when = _condition(job, node, node.when, visible, (*path, "when"), "when")
    loop_while = None
    if node.loop is not None:
        loop_path = (*path, "loop")
        if node.loop.back_to != node.name and node.loop.back_to not in ancestors[node.name]:
            job.report(
                f"loop goes back to {node.loop.back_to!r}, which is not upstream of "
                f"{node.name!r}: the loop could never reach it",
                (*loop_path, "back_to"),
                node=node.name,
                field="loop.back_to",
            )
        loop_while = _condition(
            job, node, node.loop.while_, visible | {node.name}, (*loop_path, "while"), "loop.while"
        )
    if node.fallback is not None and node.fallback.node is not None:
        if node.fallback.node == node.name:
            job.report(
                "a node cannot be its own fallback",
                (*path, "fallback", "node"),
                node=node.name,
                field="fallback.node",
            )
        elif not any(other.name == node.fallback.node for other in job.spec.nodes):
            job.report(
                _unknown("fallback node", node.fallback.node, (n.name for n in job.spec.nodes)),
                (*path, "fallback", "node"),
                node=node.name,
                field="fallback.node",
            )
    function, style, params, context_param, returns = _resolve_action(job, index, inputs)
    routed_by = next(
        (other.name for other in job.spec.nodes if node.name in (other.routes or ())), None
    )
    return CompiledNode(
        spec=node,
        function=function,
        style=style,
        params=params,
        context_param=context_param,
        returns=returns,
        upstream=upstream[node.name],
        downstream=(),
        when=when,
        loop_while=loop_while,
        routed_by=routed_by,
    )


def _condition(
    job: _Compilation,
    node: NodeSpec,
    source: str | None,
    visible: set[str],
    path: tuple[str | int, ...],
    field_name: str,
) -> Expression | None:
    if source is None:
        return None
    expression = parse_expression(source)  # the spec validated it already
    for name in sorted(expression.names - visible):
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


_Resolved = tuple[Callable[..., Any] | None, CallStyle | None, tuple[Param, ...], str | None, Any]


def _resolve_action(job: _Compilation, index: int, inputs: Mapping[str, Any]) -> _Resolved:
    node = job.spec.nodes[index]
    path: tuple[str | int, ...] = ("nodes", index)
    if node.workflow is not None:
        _check_subworkflow(job, index)
        params = tuple(Param(p, s, None, False) for p, s in node.inputs.items())
        return None, None, params, None, None
    if node.type is not None:
        function = _build_node_type(job, index)
        if function is None:
            return None, None, (), None, None
        where = (*path, "type")
    else:
        assert node.call is not None
        where = (*path, "call")
        try:
            function = resolve_call(node.call, job.functions)
        except LookupError as error:
            job.report(str(error), where, node=node.name, field="call")
            return None, None, (), None, None
    if not callable(function):
        job.report(
            f"{node.call!r} is a {type(function).__name__}, not a function",
            where,
            node=node.name,
            field="call",
        )
        return None, None, (), None, None
    return _inspect_function(job, index, function)


def _inspect_function(job: _Compilation, index: int, function: Callable[..., Any]) -> _Resolved:
    node = job.spec.nodes[index]
    path: tuple[str | int, ...] = ("nodes", index)
    signature, hints = _signature(function)
    params: list[Param] = []
    context_param = None
    takes_any = False
    item = node.map.item if node.map is not None else None
    for parameter in signature.parameters.values():
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            takes_any = True
            continue
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        annotation = hints.get(parameter.name)
        if _is_context(annotation, parameter):
            context_param = parameter.name
            continue
        has_default = parameter.default is not inspect.Parameter.empty
        if parameter.name == item:
            params.append(Param(parameter.name, None, annotation, has_default))
            continue
        source = node.inputs.get(parameter.name)
        if source is None and not has_default:
            job.report(
                f"parameter {parameter.name!r} of {_described(node)} is not bound: add it to "
                "the node's inputs (a workflow input or a node name)",
                (*path, "inputs"),
                node=node.name,
                field="inputs",
            )
        params.append(Param(parameter.name, source, annotation, has_default))
    known = {param.name for param in params}
    for param_name in node.inputs:
        if param_name not in known and not takes_any:
            job.report(
                f"{_described(node)} has no parameter {param_name!r}",
                (*path, "inputs", param_name),
                node=node.name,
                field=f"inputs.{param_name}",
            )
    if item is not None and item not in known:
        job.report(
            f"map item parameter {item!r} is not a parameter of {_described(node)}",
            (*path, "map", "item"),
            node=node.name,
            field="map.item",
        )
    return function, _style(function), tuple(params), context_param, hints.get("return")


def _described(node: NodeSpec) -> str:
    return f"{node.call}" if node.call else f"node type {node.type!r}"


def _signature(function: Callable[..., Any]) -> tuple[inspect.Signature, dict[str, Any]]:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return inspect.Signature(), {}
    try:
        hints = typing.get_type_hints(function)
    except Exception:  # unresolvable forward references: keep what is plain
        hints = {
            name: parameter.annotation
            for name, parameter in signature.parameters.items()
            if parameter.annotation is not inspect.Parameter.empty
        }
    return signature, hints


def _is_context(annotation: Any, parameter: inspect.Parameter) -> bool:
    for candidate in (annotation, parameter.annotation):
        name = candidate if isinstance(candidate, str) else getattr(candidate, "__name__", None)
        if name == _CONTEXT_ANNOTATION or (
            isinstance(name, str) and name.endswith(f".{_CONTEXT_ANNOTATION}")
        ):
            return True
    return False


def _style(function: Callable[..., Any]) -> CallStyle:
    target = function
    if not (inspect.isfunction(function) or inspect.ismethod(function)):
        target = type(function).__call__  # a callable object: judge its __call__
    if inspect.isasyncgenfunction(target):
        return "async_generator"
    if inspect.iscoroutinefunction(target):
        return "async"
    if inspect.isgeneratorfunction(target):
        return "sync_generator"
    return "sync"


def _build_node_type(job: _Compilation, index: int) -> Callable[..., Any] | None:
    node = job.spec.nodes[index]
    assert node.type is not None
    found = find_node_type(node.type)
    if found is None:
        job.report(
            f"unknown node type {node.type!r} (registered: "
            f"{', '.join(registered_node_types()) or 'none'})",
            ("nodes", index, "type"),
            node=node.name,
            field="type",
        )
        return None
    try:
        config = found.Config.model_validate(node.config)
    except ValidationError as error:
        for detail in error.errors():
            location = tuple(detail["loc"])
            job.report(
                f"{detail['msg']}",
                ("nodes", index, "config", *location),
                node=node.name,
                field=".".join(["config", *map(str, location)]),
            )
        return None
    built: Callable[..., Any] = found().build(config)
    return built


def _check_subworkflow(job: _Compilation, index: int) -> None:
    node = job.spec.nodes[index]
    assert node.workflow is not None
    child = job.workflows.get(node.workflow)
    path: tuple[str | int, ...] = ("nodes", index)
    if child is None:
        job.report(
            _unknown("workflow", node.workflow, job.workflows),
            (*path, "workflow"),
            node=node.name,
            field="workflow",
        )
        return
    for param in node.inputs:
        if param not in child.inputs:
            job.report(
                f"workflow {child.name!r} has no input {param!r}",
                (*path, "inputs", param),
                node=node.name,
                field=f"inputs.{param}",
            )
    for name in child.inputs:
        if name not in node.inputs:
            job.report(
                f"input {name!r} of workflow {child.name!r} is not bound",
                (*path, "inputs"),
                node=node.name,
                field="inputs",
            )


def _check_types(
    job: _Compilation, nodes: Mapping[str, CompiledNode], indexes: Mapping[str, int]
) -> None:
    for name, compiled in nodes.items():
        for param in compiled.params:
            producer = nodes.get(param.source) if param.source else None
            if producer is None or producer.spec.map is not None:
                continue
            if producer.style in ("async_generator", "sync_generator"):
                continue
            if not _compatible(producer.returns, param.annotation):
                job.report(
                    f"parameter {param.name!r} expects {_shown(param.annotation)} but node "
                    f"{producer.name!r} returns {_shown(producer.returns)}",
                    ("nodes", indexes[name], "inputs", param.name),
                    node=name,
                    field=f"inputs.{param.name}",
                )


def _compatible(produced: Any, wanted: Any) -> bool:
    if produced is None or wanted is None or Any in (produced, wanted) or wanted is object:
        return True
    produced_class = typing.get_origin(produced) or produced
    wanted_class = typing.get_origin(wanted) or wanted
    if not isinstance(produced_class, type) or not isinstance(wanted_class, type):
        return True  # unions, literals, type variables: not judged here
    if wanted_class is float and produced_class is int:
        return True
    return issubclass(produced_class, wanted_class)


def _shown(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


def _output(
    job: _Compilation, indexes: Mapping[str, int], upstream: Mapping[str, tuple[str, ...]]
) -> str | None:
    if job.spec.output is not None:
        if job.spec.output not in indexes:
            job.report(
                _unknown("output node", job.spec.output, indexes), ("output",), field="output"
            )
        return job.spec.output
    depended_on = {parent for parents in upstream.values() for parent in parents}
    sinks = [name for name in indexes if name not in depended_on]
    return sinks[0] if len(sinks) == 1 else None
