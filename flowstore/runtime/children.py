"""Subworkflow nodes: a child run per node execution, executed by the parent's engine."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from flowstore.definition.graph import CompiledNode
from flowstore.definition.validation import validate_inputs
from flowstore.errors import ExecutionError, RunNotFound
from flowstore.runtime.context import NodeContext
from flowstore.store.records import RunId, RunStatus

if TYPE_CHECKING:
    from flowstore.runtime.engine import Engine

__all__ = ["run_child"]


async def run_child(
    engine: Engine, node: CompiledNode, arguments: dict[str, Any], ctx: NodeContext
) -> Any:
    """Run a subworkflow node's child run to its end, here; return its output.

    The child's id is derived from the parent run and the node execution, so a parent
    that runs the node again after a crash takes up the same child run instead of
    starting a second one.
    """
    assert node.spec.workflow is not None
    graph = engine._graph_for(node.spec.workflow)
    child_id = RunId(str(uuid.uuid5(uuid.UUID(ctx.run_id), ctx.idempotency_key)))
    try:
        record = await engine.store.get_run(child_id)
    except RunNotFound:
        inputs = validate_inputs(graph, arguments)
        new = engine._new_run(graph, inputs, id=child_id, parent_run_id=ctx.run_id, owned=True)
        await engine._execute(new, graph, inputs, None)
    else:
        if not record.status.is_terminal:
            claim = await engine.store.claim_run(
                engine.worker_id,
                lease_seconds=engine.lease_seconds,
                run_id=child_id,
                steal_from=await engine._dead_local_workers(),
            )
            if claim is not None:
                inputs = validate_inputs(graph, claim.run.inputs)
                await engine._execute(claim, graph, inputs, None)
    child = await engine.wait(child_id)
    if child.status is not RunStatus.SUCCEEDED:
        error = child.error or {}
        raise ExecutionError(
            f"child run {child_id} of workflow {graph.name!r} {child.status.value}"
            + (f": {error.get('type')}: {error.get('message')}" if error else "")
        )
    return child.output
