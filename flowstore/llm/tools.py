"""The tools an `llm` node's model may call: their JSON schemas, and running a call.

A function tool is a function (sync or async) with typed parameters; its docstring tells the
model what it does; its arguments are validated by the parameters' types. A workflow tool is
a workflow registered with the engine, called with its inputs as a child run of the node's
run: the child's id comes from the call's place (the round, its position, the tool and the
arguments), so a node that runs again takes up the same child run, and a tool whose run
succeeded does not run twice. A call the model got wrong (an unknown tool, invalid
arguments) or a tool that failed is answered with the error, so the model can correct itself,
and recorded as such.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from flowstore.errors import ConfigurationError, ExecutionError
from flowstore.llm.client import ToolCall
from flowstore.llm.node import import_path
from flowstore.runtime.context import NodeContext

__all__ = ["Tools"]


class Tools:
    """The tools of one node, by name."""

    def __init__(
        self, paths: tuple[str, ...], workflows: tuple[str, ...], ctx: NodeContext
    ) -> None:
        self._ctx = ctx
        self._functions: dict[str, Callable[..., Any]] = {}
        self._arguments: dict[str, type[BaseModel]] = {}
        for path in paths:
            function = import_path(path, "tool")
            name = function.__name__
            self._functions[name] = function
            self._arguments[name] = _arguments_model(function)
        self._workflows = workflows
        if workflows and ctx.run.children is None:
            raise ConfigurationError(
                f"node {ctx.node!r} calls workflows as tools: run it with an Engine"
            )
        for name in workflows:
            if name in self._functions:
                raise ConfigurationError(
                    f"node {ctx.node!r}: {name!r} is a function tool and a workflow tool"
                )

    def schemas(self) -> list[dict[str, Any]]:
        """The tools as the request's `tools`."""
        tools = [
            _function(name, inspect.getdoc(function) or name, self._arguments[name])
            for name, function in self._functions.items()
        ]
        children = self._ctx.run.children
        for name in self._workflows:
            assert children is not None
            try:
                described, schema = children.description(name), children.inputs_schema(name)
            except ExecutionError as error:  # not registered: a mistake of the setup
                raise ConfigurationError(f"node {self._ctx.node!r}: {error}") from error
            tools.append(
                {
                    "type": "function",
                    "function": {"name": name, "description": described, "parameters": schema},
                }
            )
        return tools

    async def run(self, call: ToolCall, place: str) -> tuple[str, dict[str, Any]]:
        """Run a tool call (`place`: its round and position); its result as text for the
        model, and its record for the log."""
        record: dict[str, Any] = {"id": call.id, "name": call.name}
        try:
            record["arguments"] = json.loads(call.arguments or "{}")
        except ValueError:
            record["arguments"] = call.arguments
        if call.name in self._workflows:
            return await self._run_workflow(call, place, record)
        function = self._functions.get(call.name)
        if function is None:
            known = ", ".join([*self._functions, *self._workflows]) or "none"
            return _failed(record, f"there is no tool {call.name!r} (tools: {known})")
        try:
            arguments = self._arguments[call.name].model_validate_json(call.arguments or "{}")
        except ValidationError as error:
            return _failed(record, f"invalid arguments for {call.name}: {error}")
        values = {name: getattr(arguments, name) for name in type(arguments).model_fields}
        try:
            if inspect.iscoroutinefunction(function):
                result = await function(**values)
            else:
                result = await asyncio.to_thread(function, **values)
        except Exception as error:
            return _failed(record, f"{type(error).__name__}: {error}")
        return _succeeded(record, result)

    async def _run_workflow(
        self, call: ToolCall, place: str, record: dict[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        arguments = record["arguments"]
        if not isinstance(arguments, dict):
            return _failed(record, f"the arguments of {call.name} are not a JSON object")
        canonical = json.dumps(arguments, sort_keys=True, default=str)
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
        key = f"tool/{place}/{call.name}/{digest}"
        children = self._ctx.run.children
        assert children is not None
        try:
            output = await children.run(call.name, arguments, self._ctx, key)
        except ExecutionError as error:  # its inputs were wrong, or its run failed
            return _failed(record, str(error))
        return _succeeded(record, output)


def _function(name: str, description: str, arguments: type[BaseModel]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": arguments.model_json_schema(),
        },
    }


def _succeeded(record: dict[str, Any], result: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(result, BaseModel):
        result = result.model_dump(mode="json")
    text = result if isinstance(result, str) else json.dumps(result, default=str)
    record["result"] = text
    return text, record


def _failed(record: dict[str, Any], message: str) -> tuple[str, dict[str, Any]]:
    record["error"] = message
    return f"error: {message}", record


def _arguments_model(function: Callable[..., Any]) -> type[BaseModel]:
    """A model of a function's parameters (their types and defaults)."""
    hints = typing.get_type_hints(function)
    fields: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[name] = (hints.get(name, Any), default)
    model: type[BaseModel] = create_model(f"{function.__name__}_arguments", **fields)
    return model
