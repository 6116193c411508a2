"""The functions an `llm` node's model may call: their JSON schemas, and running a call.

A tool is a function (sync or async) with typed parameters; its docstring tells the model
what it does. The model's arguments are validated by the parameters' types; a call the model
got wrong (an unknown tool, invalid arguments) or a tool that raised is answered with the
error, so the model can correct itself, and recorded as such.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError, create_model

from flowstore.llm.client import ToolCall
from flowstore.llm.node import import_path

__all__ = ["Tools"]


class Tools:
    """The tools of one node, by name."""

    def __init__(self, paths: tuple[str, ...]) -> None:
        self._functions: dict[str, Callable[..., Any]] = {}
        self._arguments: dict[str, type[BaseModel]] = {}
        for path in paths:
            function = import_path(path, "tool")
            name = function.__name__
            self._functions[name] = function
            self._arguments[name] = _arguments_model(function)

    def schemas(self) -> list[dict[str, Any]]:
        """The tools as the request's `tools`."""
        return [
            {
                "type": "function",
                "function": {
                    "name": name,
                    "description": inspect.getdoc(function) or name,
                    "parameters": self._arguments[name].model_json_schema(),
                },
            }
            for name, function in self._functions.items()
        ]

    async def run(self, call: ToolCall) -> tuple[str, dict[str, Any]]:
        """Run a tool call; its result as text for the model, and its record for the log."""
        record: dict[str, Any] = {"id": call.id, "name": call.name}
        try:
            record["arguments"] = json.loads(call.arguments or "{}")
        except ValueError:
            record["arguments"] = call.arguments
        function = self._functions.get(call.name)
        if function is None:
            known = ", ".join(self._functions) or "none"
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
