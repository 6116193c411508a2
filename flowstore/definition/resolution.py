"""Resolving what nodes call: functions, custom node types and subworkflows, and their types.

Part of the compiler: every problem is reported to the `Compilation`, never raised one by one.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from flowstore.definition.graph import CallStyle, CompiledNode, Param
from flowstore.definition.node_types import COMPILING, find_node_type, registered_node_types
from flowstore.definition.spec import NodeSpec, WorkflowSpec
from flowstore.errors import Problem

__all__ = [
    "Compilation",
    "Locator",
    "Resolved",
    "check_types",
    "is_context",
    "resolve_action",
    "resolve_call",
    "unknown",
]

Locator = Callable[[tuple[str | int, ...]], tuple[int, int] | None]
"""Maps a path inside the spec, such as ("nodes", 2, "when"), to a (line, column) in a file."""

_CONTEXT_ANNOTATION = "NodeContext"
_UNIONS = (typing.Union, types.UnionType)


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
class Compilation:
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
        position = None
        if self.locate is not None:
            # The closest place the file has: a missing field points at its parent.
            for end in range(len(path), 0, -1):
                position = self.locate(path[:end])
                if position is not None:
                    break
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


def unknown(what: str, name: str, nodes: Iterable[str], inputs: Iterable[str] = ()) -> str:
    known = sorted({*nodes, *inputs})
    shown = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
    return f"unknown {what} {name!r} (known: {shown or 'none'})"


Resolved = tuple[Callable[..., Any] | None, CallStyle | None, tuple[Param, ...], str | None, Any]


def resolve_action(job: Compilation, index: int, inputs: Mapping[str, Any]) -> Resolved:
    node = job.spec.nodes[index]
    path: tuple[str | int, ...] = ("nodes", index)
    if node.workflow is not None:
        _check_subworkflow(job, index)
        item = node.map.item if node.map is not None else None
        bound = dict(node.inputs)
        child = job.workflows.get(node.workflow)
        if item is not None and child is not None and item in child.inputs:
            bound.setdefault(item, item)  # the child's input named like the item takes it
        params = tuple(
            Param(param, None if source == item else source, None, False)
            for param, source in bound.items()
        )
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


def _inspect_function(job: Compilation, index: int, function: Callable[..., Any]) -> Resolved:
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
        if is_context(annotation, parameter.annotation):
            context_param = parameter.name
            continue
        has_default = parameter.default is not inspect.Parameter.empty
        if parameter.name == item:
            params.append(Param(parameter.name, None, annotation, has_default))
            continue
        source = node.inputs.get(parameter.name)
        if source is not None and source == item:  # bound to the map's item by name
            params.append(Param(parameter.name, None, annotation, has_default))
            continue
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
    for param_name, source in node.inputs.items():
        if param_name in known:
            continue
        if takes_any:  # passed through **kwargs
            params.append(Param(param_name, source, None, False))
            continue
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


@functools.lru_cache(maxsize=4096)  # a large workflow calls the same few functions many times
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


def is_context(*annotations: Any) -> bool:
    """Whether any of the annotations (resolved or as written) names the `NodeContext`.

    Matched by name, so definitions do not depend on the runtime package that defines it.
    """
    for candidate in annotations:
        name = candidate if isinstance(candidate, str) else getattr(candidate, "__name__", None)
        if isinstance(name, str) and (
            name == _CONTEXT_ANNOTATION or name.endswith(f".{_CONTEXT_ANNOTATION}")
        ):
            return True
    return False


@functools.lru_cache(maxsize=4096)
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


def _build_node_type(job: Compilation, index: int) -> Callable[..., Any] | None:
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
        config = found.Config.model_validate(node.config, context={COMPILING: True})
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


def with_type_policies(node: NodeSpec) -> NodeSpec:
    """`node` with the policies its custom node type gives (`policies(config)`) where it sets
    none; as it is when it has none, or when its type or config is wrong (reported apart)."""
    found = None if node.type is None else find_node_type(node.type)
    policies = getattr(found, "policies", None)
    if found is None or policies is None:
        return node
    try:
        config = found.Config.model_validate(node.config)
    except ValidationError:
        return node
    given = policies(found(), config)
    unset = {name: value for name, value in given.items() if getattr(node, name) is None}
    return node.model_copy(update=unset) if unset else node


def _check_subworkflow(job: Compilation, index: int) -> None:
    node = job.spec.nodes[index]
    assert node.workflow is not None
    child = job.workflows.get(node.workflow)
    path: tuple[str | int, ...] = ("nodes", index)
    if child is None:
        job.report(
            unknown("workflow", node.workflow, job.workflows),
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
    item = node.map.item if node.map is not None else None
    for name in child.inputs:
        if name not in node.inputs and name != item:
            job.report(
                f"input {name!r} of workflow {child.name!r} is not bound"
                + (
                    f" (a map binds each item to the input named like it: map.item {item!r})"
                    if item is not None
                    else ""
                ),
                (*path, "inputs"),
                node=node.name,
                field="inputs",
            )


def check_types(
    job: Compilation, nodes: Mapping[str, CompiledNode], indexes: Mapping[str, int]
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
    if typing.get_origin(produced) in _UNIONS:  # every value it may produce must fit
        return all(_compatible(member, wanted) for member in typing.get_args(produced))
    if typing.get_origin(wanted) in _UNIONS:
        return any(_compatible(produced, member) for member in typing.get_args(wanted))
    produced_class = typing.get_origin(produced) or produced
    wanted_class = typing.get_origin(wanted) or wanted
    if not isinstance(produced_class, type) or not isinstance(wanted_class, type):
        return True  # unions, literals, type variables: not judged here
    if wanted_class is float and produced_class is int:
        return True
    return issubclass(produced_class, wanted_class)


def _shown(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)
