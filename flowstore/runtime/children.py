"""Subworkflow nodes: a child run per node execution, executed by the parent's engine."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from flowstore.definition.graph import CompiledNode, Graph
from flowstore.definition.validation import inputs_schema, validate_inputs
from flowstore.errors import ExecutionError, RunNotFound
from flowstore.runtime.context import NodeContext
from flowstore.store.records import RunId, RunStatus

if TYPE_CHECKING:
    from flowstore.runtime.engine import Engine

__all__ = ["EngineChildren", "child_run_id", "run_child"]

_CHILDREN = uuid.UUID("6f1d3c52-9a0e-4c57-8f7e-2b1c0d9e4a11")
"""The namespace of child run ids under a parent whose id is not a UUID."""


def child_run_id(parent: str, idempotency_key: str) -> RunId:
    """The id of the child run a node execution starts: the same every time that execution
    runs, whatever the parent's id looks like (`order-42` as well as a UUID)."""
    try:
        namespace = uuid.UUID(parent)
    except ValueError:  # a caller-chosen id
        return RunId(str(uuid.uuid5(_CHILDREN, f"{parent}/{idempotency_key}")))
    return RunId(str(uuid.uuid5(namespace, idempotency_key)))


async def run_child(
    engine: Engine, node: CompiledNode, arguments: dict[str, Any], ctx: NodeContext
) -> Any:
    """Run a subworkflow node's child run to its end, here; return its output.

    The child's id is derived from the parent run and the node execution, so a parent
    that runs the node again after a crash takes up the same child run instead of
    starting a second one.
    """
    assert node.spec.workflow is not None
    graph = engine._definitions.named(node.spec.workflow)
    child_id = child_run_id(ctx.run_id, ctx.idempotency_key)
    return await _child_to_its_end(engine, graph, arguments, ctx, child_id)


async def _child_to_its_end(
    engine: Engine, graph: Graph, arguments: dict[str, Any], ctx: NodeContext, child_id: RunId
) -> Any:
    """Start the child run `child_id`, or take it up where it stands; its output."""
    try:
        record = await engine.store.get_run(child_id)
    except RunNotFound:
        inputs = validate_inputs(graph, arguments)
        new = engine._new_run(graph, inputs, id=child_id, parent_run_id=ctx.run_id, owned=True)
        await engine._execute(new, graph, inputs, None)
    else:
        claim = None
        if record.status is RunStatus.FAILED:  # the node runs again: so does its child, from
            # what the child committed (a retry of the node, or its parent resumed)
            claim = await engine.store.reopen_run(
                child_id, engine.worker_id, lease_seconds=engine.lease_seconds
            )
        elif not record.status.is_terminal:
            claim = await engine._take(child_id)
        if claim is not None:
            await engine._execute(
                claim, engine._definitions.by_hash.get(record.graph_hash, graph), None, None
            )
    child = await engine.wait(child_id)
    if child.status is not RunStatus.SUCCEEDED:
        error = child.error or {}
        raise ExecutionError(
            f"child run {child_id} of workflow {graph.name!r} {child.status.value}"
            + (f": {error.get('type')}: {error.get('message')}" if error else "")
        )
    return child.output


class EngineChildren:
    """`ChildWorkflows` of an engine: the workflows registered with it, run here."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def inputs_schema(self, name: str) -> dict[str, Any]:
        return inputs_schema(self._engine._definitions.named(name))

    def description(self, name: str) -> str:
        return self._engine._definitions.named(name).spec.description or name

    async def run(self, name: str, inputs: dict[str, Any], ctx: NodeContext, key: str) -> Any:
        graph = self._engine._definitions.named(name)
        child_id = child_run_id(ctx.run_id, f"{ctx.idempotency_key}/{key}")
        return await _child_to_its_end(self._engine, graph, inputs, ctx, child_id)
