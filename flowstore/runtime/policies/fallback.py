"""Fallback: what a node produces when it fails for good, instead of failing its run."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowstore.definition.graph import CompiledNode
from flowstore.errors import ExecutionError

__all__ = ["FallbackUsed", "fall_back"]


@dataclass(frozen=True, slots=True)
class FallbackUsed:
    """A node's output came from its fallback.

    Attributes:
        output: The fallback output.
        error: The failure the fallback replaced.
        source: Where the output came from: `value`, `call` or `node`.
    """

    output: Any
    error: Exception
    source: str


async def fall_back(
    node: CompiledNode,
    error: Exception,
    arguments: Mapping[str, Any],
    outputs: Mapping[str, Any],
) -> FallbackUsed:
    """The output of `node`'s fallback for `error`.

    `value` is used as it is; `call` is called with the node's own arguments (a sync callable
    in a worker thread); `node` gives the output of that upstream node.

    Raises:
        ExecutionError: The fallback node has no output (it was skipped or failed); the
            original error is its cause.
        Exception: Whatever the fallback callable raises, with the original error as its
            context.
    """
    policy = node.spec.fallback
    assert policy is not None
    if policy.node is not None:
        if policy.node not in outputs:
            raise ExecutionError(
                f"node {node.name!r} failed and its fallback node {policy.node!r} has no "
                "output to give instead (it was skipped or failed)"
            ) from error
        return FallbackUsed(outputs[policy.node], error, "node")
    if policy.call is not None:
        function = node.fallback_function
        assert function is not None
        if inspect.iscoroutinefunction(function):
            output = await function(**arguments)
        else:
            output = await asyncio.to_thread(function, **arguments)
        return FallbackUsed(output, error, "call")
    return FallbackUsed(policy.value, error, "value")
