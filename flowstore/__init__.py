"""flowstore: a durable workflow engine for Python asyncio, persisted through SQL.

`import flowstore` stays light: the definition API, the store and their dependencies load
when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowstore.errors import DefinitionError, FlowstoreError

if TYPE_CHECKING:
    from flowstore.definition.builder import Workflow
    from flowstore.definition.graph import Graph
    from flowstore.definition.node_types import node_type
    from flowstore.definition.spec import (
        Breaker,
        Cache,
        ExecutionConfig,
        Fallback,
        Loop,
        MapOver,
        MemoryConfig,
        Retry,
    )
    from flowstore.hooks import HookEvent

__all__ = [
    "Breaker",
    "Cache",
    "DefinitionError",
    "ExecutionConfig",
    "Fallback",
    "FlowstoreError",
    "Graph",
    "HookEvent",
    "Loop",
    "MapOver",
    "MemoryConfig",
    "Retry",
    "Workflow",
    "__version__",
    "node_type",
]

__version__ = "0.1.0"

_LAZY = {
    "Workflow": "flowstore.definition.builder",
    "Graph": "flowstore.definition.graph",
    "node_type": "flowstore.definition.node_types",
    "HookEvent": "flowstore.hooks",
    **dict.fromkeys(
        [
            "Breaker",
            "Cache",
            "ExecutionConfig",
            "Fallback",
            "Loop",
            "MapOver",
            "MemoryConfig",
            "Retry",
        ],
        "flowstore.definition.spec",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'flowstore' has no attribute {name!r}")
