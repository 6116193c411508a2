"""The Python API for defining workflows: `Workflow` and `@flow.node`.

A node's parameters say where its inputs come from: a parameter named like another node
receives that node's output (and so creates the edge), one named like a workflow input receives
the input, and one annotated `NodeContext` receives the context. Any other parameter without a
default becomes a workflow input, typed by its annotation. The result is the same
`WorkflowSpec` a DSL file gives, compiled by the same compiler.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel

from flowstore.definition.compiler import INPUT_TYPES, Locator, compile_spec
from flowstore.definition.graph import Graph
from flowstore.definition.resolution import is_context
from flowstore.definition.spec import (
    Breaker,
    Cache,
    ExecutionConfig,
    Fallback,
    Loop,
    MapOver,
    Retry,
    WorkflowSpec,
    validate_spec,
)
from flowstore.errors import DefinitionError, Problem
from flowstore.hooks import H, HookKind, Hooks

__all__ = ["Workflow"]

Join = Literal["all", "any", "all_done"]
F = TypeVar("F", bound=Callable[..., Any])
_TYPE_NAMES = {value: name for name, value in INPUT_TYPES.items() if value is not Any}


@dataclass
class _NodeDefinition:
    name: str
    fields: dict[str, Any]
    function: Callable[..., Any] | None = None
    explicit_inputs: Mapping[str, str] | None = None
    map_item: str | None = None
    children: list[Workflow] = field(default_factory=list)


class Workflow:
    """A workflow: nodes and the data that flows between them.

    Define one in Python with `@flow.node`, or load one with `Workflow.load(path)`; both give
    the same spec and the same compiled graph.

    Args:
        name: Unique among the workflows an engine runs.
        version: Your version label; runs also record the graph's hash.
        description: What the workflow does.
        config: How its runs execute.
        input_model: One Pydantic model that validates all inputs at once.
        output: The node whose output is the run's output (default: the only final node).
        resources: Shared resources the engine provides (`Engine(resources=...)`); a node
            parameter with one of these names receives it.
        signals: The signals its nodes wait for, name to the Pydantic model of their
            payload: a payload that does not match is refused when it is sent.
        inputs: Workflow inputs declared up front, name to type (`str`, `int`, a Pydantic
            model, or a DSL type name). Any node parameter that is not a node, a resource or
            the context is an input too; declaring one is needed only when its name is close
            to a node's, which is otherwise refused as a likely typo.
    """

    def __init__(
        self,
        name: str,
        version: str = "1",
        *,
        description: str | None = None,
        config: ExecutionConfig | None = None,
        input_model: type[BaseModel] | None = None,
        output: str | None = None,
        resources: Sequence[str] = (),
        inputs: Mapping[str, Any] | None = None,
        signals: Mapping[str, type[BaseModel]] | None = None,
    ) -> None:
        self.name = name
        self.signals = dict(signals or {})
        self.resources = tuple(resources)
        self.inputs = {
            key: value if isinstance(value, str) else _type_name(value)
            for key, value in (inputs or {}).items()
        }
        self.version = version
        self.description = description
        self.config = config or ExecutionConfig()
        self.input_model = input_model
        self.output = output
        self._definitions: list[_NodeDefinition] = []
        self._loaded: WorkflowSpec | None = None
        self._locate: Locator | None = None
        self._file: str | None = None
        self._graph: Graph | None = None
        self.hooks = Hooks()

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, version={self.version!r})"

    @overload
    def on(self, kind: HookKind, hook: None = None) -> Callable[[H], H]: ...

    @overload
    def on(self, kind: HookKind, hook: H) -> H: ...

    def on(self, kind: HookKind, hook: Any = None) -> Any:
        """Register a hook told of `kind` events of this workflow's runs (a decorator too);
        see `flowstore.hooks`."""
        return self.hooks.on(kind, hook)

    @classmethod
    def load(
        cls, source: str | Path | Mapping[str, Any], *, allow: Sequence[str] | None = None
    ) -> Workflow:
        """Load a workflow from a YAML or JSON file, or from a dict in the same form.

        A definition is code: its `call` paths are imported when it compiles. To load one
        written by others, give `allow`, the modules (and their submodules) it may import;
        any other import path is refused before anything is imported.

        Raises:
            DefinitionError: Every problem in the file, each with its line and column.
        """
        from flowstore.definition.dsl import read_definition
        from flowstore.definition.trust import check_allowed

        data, locate, file = read_definition(source)
        spec = validate_spec(data, locate=locate, file=file)
        if allow is not None:
            check_allowed(spec, allow, locate=locate, file=file)
        loaded = cls(spec.name, spec.version, description=spec.description, config=spec.config)
        loaded._loaded, loaded._locate, loaded._file = spec, locate, file
        return loaded

    @property
    def subworkflows(self) -> list[Workflow]:
        """The workflows this one runs as child runs (those added with `subworkflow`)."""
        return [child for definition in self._definitions for child in definition.children]

    # ------------------------------------------------------------------ defining nodes

    @overload
    def node(self, function: F, /) -> F: ...

    @overload
    def node(
        self,
        function: None = None,
        /,
        *,
        name: str | None = None,
        after: Sequence[str] = (),
        when: str | None = None,
        routes: Sequence[str] | None = None,
        join: Join = "all",
        loop: Loop | Mapping[str, Any] | None = None,
        map: MapOver | Mapping[str, Any] | None = None,
        retry: Retry | None = None,
        timeout: float | None = None,
        cache: Cache | None = None,
        fallback: Fallback | None = None,
        breaker: Breaker | None = None,
    ) -> Callable[[F], F]: ...

    def node(self, function: Callable[..., Any] | None = None, /, **options: Any) -> Any:
        """Add a function as a node; use bare (`@flow.node`) or with options.

        Options: `name`, `after`, `when` (a condition), `routes` (this node is a router),
        `join`, `loop`, `map`, `retry`, `timeout`, `cache`, `fallback`, `breaker`. Sync
        functions run in a worker thread; async generators stream tokens.
        """

        def register(target: Callable[..., Any]) -> Callable[..., Any]:
            self._add_function(target, options)
            return target

        return register if function is None else register(function)

    def subworkflow(
        self,
        name: str,
        workflow: Workflow,
        *,
        inputs: Mapping[str, str] | Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        """Add a node that runs `workflow` as a child run; `inputs` maps its inputs to sources."""
        bound = _as_mapping(inputs if inputs is not None else list(workflow.spec.inputs))
        self._add(
            _NodeDefinition(
                name,
                {"workflow": workflow.name, **options},
                explicit_inputs=bound,
                children=[workflow],
                map_item=_map_item(options),
            )
        )

    def custom(
        self,
        name: str,
        type: str,
        *,
        config: Mapping[str, Any] | None = None,
        inputs: Mapping[str, str] | Sequence[str] = (),
        **options: Any,
    ) -> None:
        """Add a node of a registered custom node type."""
        fields = {"type": type, "config": dict(config or {}), **options}
        self._add(
            _NodeDefinition(
                name, fields, explicit_inputs=_as_mapping(inputs), map_item=_map_item(options)
            )
        )

    def llm(
        self,
        name: str,
        config: BaseModel | Mapping[str, Any],
        *,
        inputs: Mapping[str, str] | Sequence[str] = (),
        **options: Any,
    ) -> None:
        """Add an `llm` node: a call to an OpenAI-compatible chat endpoint (`config`: a
        `flowstore.llm.LlmConfig` or its fields; the `llm` extra). Its `inputs` bind the
        names its templates use; `options` are the node's (`retry`, `after`, `when`, ...)."""
        fields = (
            config.model_dump(mode="json", exclude_defaults=True)
            if isinstance(config, BaseModel)
            else config
        )
        self.custom(name, "llm", config=fields, inputs=inputs, **options)

    def _add_function(self, function: Callable[..., Any], options: dict[str, Any]) -> None:
        name = options.pop("name", None) or getattr(function, "__name__", None)
        if not isinstance(name, str):
            raise DefinitionError([Problem("give the node a name", workflow=self.name)])
        call = f"{function.__module__}:{function.__qualname__}"
        self._add(
            _NodeDefinition(
                name, {"call": call, **options}, function=function, map_item=_map_item(options)
            )
        )

    def _add(self, definition: _NodeDefinition) -> None:
        if self._loaded is not None:
            raise DefinitionError(
                [
                    Problem(
                        "a workflow loaded from a file cannot get nodes in Python",
                        workflow=self.name,
                    )
                ]
            )
        self._definitions.append(definition)
        self._graph = None

    # ------------------------------------------------------------------ the spec and graph

    @property
    def spec(self) -> WorkflowSpec:
        """The workflow's spec, the same a DSL file with the same content gives."""
        if self._loaded is not None:
            return self._loaded
        node_names = {definition.name for definition in self._definitions}
        inputs: dict[str, str] = dict(self.inputs)
        nodes = []
        problems: list[Problem] = []
        for definition in self._definitions:
            bound = definition.explicit_inputs
            if bound is None:
                bound = self._bind(definition, node_names, inputs, problems)
            else:
                child_inputs = definition.children[0].spec.inputs if definition.children else {}
                for param, source in bound.items():
                    if source == definition.map_item:
                        continue  # each item of the node's map
                    known = source in node_names or source in inputs or source in self.resources
                    if not known:
                        inputs[source] = child_inputs.get(param, "any")
            nodes.append({"name": definition.name, **definition.fields, "inputs": dict(bound)})
        if problems:
            raise DefinitionError(problems)
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "inputs": inputs,
            "nodes": nodes,
            "config": self.config,
        }
        if self.description is not None:
            data["description"] = self.description
        if self.input_model is not None:
            data["input_model"] = _import_path(self.input_model)
        if self.output is not None:
            data["output"] = self.output
        if self.resources:
            data["resources"] = list(self.resources)
        if self.signals:
            data["signals"] = {name: _import_path(model) for name, model in self.signals.items()}
        return validate_spec(data)

    def _bind(
        self,
        definition: _NodeDefinition,
        node_names: set[str],
        inputs: dict[str, str],
        problems: list[Problem],
    ) -> dict[str, str]:
        assert definition.function is not None
        bound: dict[str, str] = {}
        signature = inspect.signature(definition.function)
        try:
            hints = typing.get_type_hints(definition.function)
        except Exception:  # unresolvable forward references: type them as `any`
            hints = {}
        model_fields = self.input_model.model_fields if self.input_model else {}
        for parameter in signature.parameters.values():
            if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            annotation = hints.get(parameter.name, parameter.annotation)
            if is_context(annotation) or parameter.name == definition.map_item:
                continue
            if (
                parameter.name in node_names
                or parameter.name in inputs
                or parameter.name in model_fields
                or parameter.name in self.resources
            ):
                bound[parameter.name] = parameter.name
            elif parameter.default is inspect.Parameter.empty:
                typo = _likely_typo(parameter.name, node_names, self.resources)
                if typo is not None:
                    problems.append(self._typo(definition, parameter.name, typo))
                inputs[parameter.name] = _type_name(annotation)
                bound[parameter.name] = parameter.name
        return bound

    def _typo(self, definition: _NodeDefinition, parameter: str, meant: str) -> Problem:
        """A parameter that would become a workflow input, named almost like a node or a
        resource: reported where the function is defined."""
        function = definition.function
        code = getattr(function, "__code__", None)
        return Problem(
            f"parameter {parameter!r} is not a node, a resource or a declared input: did you "
            f"mean {meant}? (if it is a workflow input, declare it: "
            f"Workflow({self.name!r}, inputs={{{parameter!r}: ...}}))",
            workflow=self.name,
            node=definition.name,
            field=parameter,
            file=code.co_filename if code is not None else None,
            line=code.co_firstlineno if code is not None else None,
        )

    def _functions(self) -> dict[str, Any]:
        """The node functions by import path. Two functions under one path (made by one
        factory, say) would run as one, silently: an error names them instead."""
        functions: dict[str, Any] = {}
        owners: dict[str, str] = {}
        for definition in self._definitions:
            if definition.function is None:
                continue
            call = definition.fields["call"]
            if functions.setdefault(call, definition.function) is not definition.function:
                raise DefinitionError(
                    [
                        Problem(
                            f"nodes {owners[call]!r} and {definition.name!r} are different "
                            f"functions with one import path, {call}: give each function its "
                            "own name (or __qualname__)",
                            workflow=self.name,
                            node=definition.name,
                            field="call",
                        )
                    ]
                )
            owners.setdefault(call, definition.name)
        return functions

    def compile(self, *, workflows: Mapping[str, WorkflowSpec] | None = None) -> Graph:
        """Compile (once) into the graph the engine runs.

        Raises:
            DefinitionError: With every problem of the definition.
        """
        if self._graph is None:
            known = {child.name: child.spec for d in self._definitions for child in d.children}
            known.update(workflows or {})
            functions = self._functions()
            if self.input_model is not None:
                functions[_import_path(self.input_model)] = self.input_model
            for model in self.signals.values():
                functions[_import_path(model)] = model
            self._graph = compile_spec(
                self.spec,
                functions=functions,
                workflows=known,
                locate=self._locate,
                file=self._file,
            )
        return self._graph


def _map_item(options: Mapping[str, Any]) -> str | None:
    """The name of the parameter (or child input) that takes each item of the node's map."""
    over = options.get("map")
    if over is None:
        return None
    item: str = over.item if isinstance(over, MapOver) else over.get("item", "item")
    return item


def _as_mapping(inputs: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    if isinstance(inputs, Mapping):
        return dict(inputs)
    return {name: name for name in inputs}


def _likely_typo(name: str, nodes: Iterable[str], resources: Iterable[str]) -> str | None:
    """What a parameter named `name` was likely meant to be: a node or resource whose name
    differs by a letter or two."""
    for kind, names in (("node", nodes), ("resource", resources)):
        close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.8)
        if close:
            return f"{kind} {close[0]!r}"
    return None


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty or annotation is None or annotation is Any:
        return "any"
    origin = typing.get_origin(annotation) or annotation
    if origin in _TYPE_NAMES:
        return _TYPE_NAMES[origin]
    if isinstance(origin, type) and issubclass(origin, BaseModel):
        return _import_path(origin)
    return "any"


def _import_path(cls: type[Any]) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"
