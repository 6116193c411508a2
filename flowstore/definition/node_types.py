"""Custom node types: reusable kinds of node configured from the DSL (`type:` and `config:`).

A node type is a class with a Pydantic `Config` model and a `build(config)` method that returns
the function to call; a `policies(config)` method, if it has one, gives the policies (`retry`,
`timeout`, ...) its nodes have unless they set their own. Register it with
`@node_type("name")`, or expose it from an installed package in the `flowstore.node_types`
entry-point group.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel

__all__ = [
    "COMPILING",
    "ENTRY_POINT_GROUP",
    "NodeType",
    "find_node_type",
    "node_type",
    "registered_node_types",
]

ENTRY_POINT_GROUP = "flowstore.node_types"

COMPILING = "flowstore_compiling"
"""Set in the validation context when a workflow compiles a node's config: a validator may
import what the config names then (and not when the config is made in a module's body)."""


class NodeType(Protocol):
    """What a custom node type provides."""

    Config: ClassVar[type[BaseModel]]

    def build(self, config: Any) -> Callable[..., Any]:
        """Return the function a node of this type calls, given its validated config."""
        ...


_REGISTRY: dict[str, type[NodeType]] = {}
T = TypeVar("T", bound=type[Any])


def node_type(name: str) -> Callable[[T], T]:
    """Register a class as the custom node type `name`."""

    def register(cls: T) -> T:
        if not isinstance(getattr(cls, "Config", None), type) or not issubclass(
            cls.Config, BaseModel
        ):
            raise TypeError(
                f"node type {name!r}: {cls.__qualname__}.Config must be a Pydantic model"
            )
        if not callable(getattr(cls, "build", None)):
            raise TypeError(f"node type {name!r}: {cls.__qualname__} needs a build(config) method")
        _REGISTRY[name] = cls
        return cls

    return register


_BUILT_IN = {
    "sleep": "flowstore.definition.waiting_nodes",
    "signal": "flowstore.definition.waiting_nodes",
    "llm": "flowstore.llm.node",
}


def find_node_type(name: str) -> type[NodeType] | None:
    """The node type registered as `name`, looking in the built-in ones and the entry points
    if needed."""
    if name not in _REGISTRY and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])
    if name not in _REGISTRY:
        for entry in entry_points(group=ENTRY_POINT_GROUP, name=name):
            _REGISTRY[name] = entry.load()
            break
    return _REGISTRY.get(name)


def registered_node_types() -> list[str]:
    """Names of the node types registered so far (entry points included)."""
    found = {
        *_REGISTRY,
        *_BUILT_IN,
        *(entry.name for entry in entry_points(group=ENTRY_POINT_GROUP)),
    }
    return sorted(found)
