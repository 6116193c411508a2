"""flowstore: a durable workflow engine for Python asyncio, persisted through SQL.

Everything an application touches is importable from here: `from flowstore import Engine,
Workflow, NodeContext, Retry`. `import flowstore` stays light: each name loads its module
(Pydantic, SQLAlchemy, ...) the first time it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from flowstore.errors import (
    CircuitOpen,
    ConfigurationError,
    DatabaseGone,
    DefinitionError,
    ExecutionError,
    ExpressionError,
    FlowstoreError,
    IntegrityConflict,
    InvalidValue,
    LeaseLost,
    LlmCallFailed,
    LlmOutputInvalid,
    LlmRequestRejected,
    NodeTimeout,
    Problem,
    QueueNotFound,
    RunEnded,
    RunNotFound,
    RunTimeout,
    ScheduleNotFound,
    SchemaError,
    StoredValueError,
    StoreError,
    StoreUnavailable,
    StreamInterrupted,
    UnserializableValue,
    ValueTooLarge,
)

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
    from flowstore.events import (
        CheckpointEvent,
        CustomEvent,
        NodeEvent,
        RunEvent,
        StreamEvent,
        TokenEvent,
    )
    from flowstore.hooks import HookEvent
    from flowstore.llm.node import LlmConfig, LlmEndpoint, ModelPrice
    from flowstore.runtime.client import Client
    from flowstore.runtime.context import NodeContext
    from flowstore.runtime.engine import Engine
    from flowstore.runtime.models import Run, RunStatus
    from flowstore.runtime.sealing import new_secrets_key
    from flowstore.store.engine import StoreSettings
    from flowstore.store.queue_records import Queue
    from flowstore.store.schedule_records import Schedule

__all__ = [
    "Breaker",
    "Cache",
    "CheckpointEvent",
    "CircuitOpen",
    "Client",
    "ConfigurationError",
    "CustomEvent",
    "DatabaseGone",
    "DefinitionError",
    "Engine",
    "ExecutionConfig",
    "ExecutionError",
    "ExpressionError",
    "Fallback",
    "FlowstoreError",
    "Graph",
    "HookEvent",
    "IntegrityConflict",
    "InvalidValue",
    "LeaseLost",
    "LlmCallFailed",
    "LlmConfig",
    "LlmEndpoint",
    "LlmOutputInvalid",
    "LlmRequestRejected",
    "Loop",
    "MapOver",
    "MemoryConfig",
    "ModelPrice",
    "NodeContext",
    "NodeEvent",
    "NodeTimeout",
    "Problem",
    "Queue",
    "QueueNotFound",
    "Retention",
    "Retry",
    "Run",
    "RunEvent",
    "RunEnded",
    "RunNotFound",
    "RunStatus",
    "RunTimeout",
    "Schedule",
    "ScheduleNotFound",
    "SchemaError",
    "StoreError",
    "StoreSettings",
    "StoreUnavailable",
    "StoredValueError",
    "StreamEvent",
    "StreamInterrupted",
    "TokenEvent",
    "UnserializableValue",
    "ValueTooLarge",
    "Workflow",
    "__version__",
    "new_secrets_key",
    "node_type",
]

__version__ = "0.1.0"

_LAZY = {
    "Workflow": "flowstore.definition.builder",
    "Graph": "flowstore.definition.graph",
    "node_type": "flowstore.definition.node_types",
    "HookEvent": "flowstore.hooks",
    **dict.fromkeys(["LlmConfig", "LlmEndpoint", "ModelPrice"], "flowstore.llm.node"),
    "Client": "flowstore.runtime.client",
    "NodeContext": "flowstore.runtime.context",
    "Engine": "flowstore.runtime.engine",
    "Run": "flowstore.runtime.models",
    "RunStatus": "flowstore.runtime.models",
    "Retention": "flowstore.runtime.retention",
    "StoreSettings": "flowstore.store.engine",
    "Queue": "flowstore.store.queue_records",
    "Schedule": "flowstore.store.schedule_records",
    "new_secrets_key": "flowstore.runtime.sealing",
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
    **dict.fromkeys(
        ["CheckpointEvent", "CustomEvent", "NodeEvent", "RunEvent", "StreamEvent", "TokenEvent"],
        "flowstore.events",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'flowstore' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
