"""Cache: a node's output kept in the store under a key of its identity, version and inputs.

The key is a SHA-256 of the workflow and node names, the digest of the node's definition (so
changing the node invalidates its entries) and the canonical JSON of its inputs (keys sorted),
or of what the node's `cache.key` function returns for those inputs. Entries are shared by
every run, worker and restart, and expire after `ttl` seconds (never when it is not set).
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Mapping
from typing import Any

import pydantic_core

from flowstore.definition.graph import CompiledNode, Graph
from flowstore.errors import ExecutionError

__all__ = ["cache_key"]


def cache_key(graph: Graph, node: CompiledNode, arguments: Mapping[str, Any]) -> str:
    """The cache key of a call of `node` with `arguments`.

    Raises:
        ExecutionError: The inputs (or the key function's result) have no JSON form, or the
            key function failed or is a coroutine function.
    """
    function = node.cache_key_function
    try:
        if function is not None:
            if inspect.iscoroutinefunction(function):
                raise ExecutionError(
                    f"node {node.name!r}: cache key function must be a plain function"
                )
            basis: Any = function(**arguments)
        else:
            basis = arguments
        text = json.dumps(
            pydantic_core.to_jsonable_python(basis), sort_keys=True, separators=(",", ":")
        )
    except ExecutionError:
        raise
    except Exception as error:
        raise ExecutionError(
            f"node {node.name!r}: cannot make a cache key of its inputs: "
            f"{type(error).__name__}: {error}"
        ) from error
    identity = json.dumps([graph.name, node.name, _node_digest(node), text], separators=(",", ":"))
    return hashlib.sha256(identity.encode()).hexdigest()


def _node_digest(node: CompiledNode) -> str:
    if node.cache_digest is not None:  # made when the graph was compiled
        return node.cache_digest
    spec = node.spec.model_dump_json(by_alias=True, exclude_defaults=True)
    return hashlib.sha256(spec.encode()).hexdigest()[:32]
