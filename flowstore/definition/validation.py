"""Pydantic validation of a run's values against the types a definition declares.

Workflow inputs are checked against their declared types (or the workflow's input model), a
node's arguments against its parameter annotations, and its output against its return
annotation. Unannotated values pass as they are. Type adapters are built once per type.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    PydanticUserError,
    TypeAdapter,
    ValidationError,
    create_model,
)

from flowstore.definition.compiler import INPUT_TYPES
from flowstore.definition.graph import CompiledNode, Graph
from flowstore.definition.spec import WorkflowSpec
from flowstore.errors import InvalidValue

__all__ = [
    "prepare_validators",
    "restored_output",
    "typed_output",
    "validate_arguments",
    "validate_inputs",
    "validate_inputs_by_spec",
    "validate_output",
]


def prepare_validators(graph: Graph) -> None:
    """Build the validators a run of `graph` uses (its inputs model, the adapters of the
    annotations its nodes' values are checked against) now, so that its first run does not
    spend milliseconds building them. An annotation Pydantic cannot handle is left for the
    run to report, as it would without this."""
    with contextlib.suppress(PydanticUserError, TypeError):
        _inputs_model(graph)
    for node in graph.nodes.values():
        annotations = [
            param.annotation
            for param in node.params
            if param.source is None or param.source not in graph.resources
        ]
        if node.style not in ("async_generator", "sync_generator"):
            annotations.append(node.returns)
        for annotation in annotations:
            if annotation is not None:
                with contextlib.suppress(PydanticUserError, TypeError):
                    _adapter(annotation)


def validate_inputs(graph: Graph, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a run's inputs; return them converted to their declared types.

    Raises:
        InvalidValue: Naming the workflow and every input that is missing, unknown or wrong.
    """
    model = _inputs_model(graph)
    try:
        validated = model.model_validate(dict(values))
    except ValidationError as error:
        raise InvalidValue(
            f"workflow {graph.name!r}: invalid inputs: {_listed(error, 'input')}"
        ) from None
    return {name: getattr(validated, name) for name in type(validated).model_fields}


def inputs_schema(graph: Graph) -> dict[str, Any]:
    """The JSON schema of a workflow's inputs (what a model calling it as a tool is told)."""
    return _inputs_model(graph).model_json_schema()


def validate_inputs_by_spec(spec: WorkflowSpec, values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a run's inputs as far as a process without the workflow's code can (a `Client`):
    each declared input given and no other, of its type when that is a JSON type (`str`,
    `int`, ...); a Pydantic model's fields, and a workflow's `input_model`, are left for the
    worker that runs it to check.

    Raises:
        InvalidValue: Naming the workflow and every input that is missing, unknown or wrong.
    """
    if spec.input_model is not None:
        return dict(values)
    fields: dict[str, Any] = {
        name: (INPUT_TYPES.get(type_name, Any), ...) for name, type_name in spec.inputs.items()
    }
    model = create_model(f"{spec.name}_inputs", __config__=ConfigDict(extra="forbid"), **fields)
    try:
        validated = model.model_validate(dict(values))
    except ValidationError as error:
        raise InvalidValue(
            f"workflow {spec.name!r}: invalid inputs: {_listed(error, 'input')}"
        ) from None
    return {name: getattr(validated, name) for name in type(validated).model_fields}


def validate_arguments(
    graph: Graph, node: CompiledNode, arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """Check the values a node is about to be called with, by its parameter annotations."""
    checked = dict(arguments)
    for param in node.params:
        if param.annotation is None or param.name not in arguments:
            continue
        try:
            checked[param.name] = _adapter(param.annotation).validate_python(arguments[param.name])
        except ValidationError as error:
            raise InvalidValue(
                f"workflow {graph.name!r}, node {node.name!r}: parameter {param.name!r} "
                f"(from {param.source or 'the map item'!r}): {_listed(error, 'value')}"
            ) from None
    return checked


def validate_output(graph: Graph, node: CompiledNode, value: Any) -> Any:
    """Check a node's output against its return annotation; return it converted."""
    if node.returns is None or node.style in ("async_generator", "sync_generator"):
        return value
    try:
        return _adapter(node.returns).validate_python(value)
    except ValidationError as error:
        raise InvalidValue(
            f"workflow {graph.name!r}, node {node.name!r}: output: {_listed(error, 'value')}"
        ) from None


def typed_output(node: CompiledNode) -> bool:
    """Whether a node's return annotation says what its output is (so a stored output can be
    rebuilt from JSON by it); else the output is taken as the JSON it is stored as."""
    returns = node.returns
    return (
        returns is not None
        and returns is not Any
        and node.style not in ("async_generator", "sync_generator")
    )


def restored_output(graph: Graph, node: CompiledNode, stored: Any) -> Any:
    """A node's output as it reads back from the store (JSON), made the value it was live:
    converted by its return annotation (each item's, in a map node)."""
    if not typed_output(node):
        return stored
    if node.spec.map is not None and isinstance(stored, list):
        return [validate_output(graph, node, item) for item in stored]
    return validate_output(graph, node, stored)


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    try:
        return _cached_adapter(annotation)
    except TypeError:  # an unhashable annotation: build it each time
        return TypeAdapter(annotation)


@functools.lru_cache(maxsize=1024)
def _cached_adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


@functools.lru_cache(maxsize=256)
def _inputs_model(graph: Graph) -> type[BaseModel]:
    if graph.input_model is not None:
        return graph.input_model
    fields: dict[str, Any] = {name: (annotation, ...) for name, annotation in graph.inputs.items()}
    return create_model(f"{graph.name}_inputs", __config__=ConfigDict(extra="forbid"), **fields)


def _listed(error: ValidationError, what: str) -> str:
    parts = []
    for detail in error.errors():
        location = ".".join(str(part) for part in detail["loc"])
        message = "missing" if detail["type"] == "missing" else detail["msg"]
        if detail["type"] == "extra_forbidden":
            message = f"unknown {what}"
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)
