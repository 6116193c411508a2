"""Fork: a new run that keeps what a run's nodes did up to one node and executes the rest.

```python
run = await engine.fork(run_id, from_node="draft")                 # after fixing `draft`
run = await engine.fork(run_id, from_node="draft", inputs={"tone": "formal"})
```

The new run executes `from_node` and every node downstream of it; every other node keeps the
outcome it had in the source run (its output, or its skip), copied into the new run's log by
its first commit, so the new run reads like one that stopped just before `from_node` and was
resumed. It runs under the definition registered here (the newest, or `version`), and its
inputs are the source's with `inputs` laid over them. Nothing of the source run changes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowstore.definition.shape import Shape
from flowstore.definition.validation import validate_inputs
from flowstore.errors import ExecutionError
from flowstore.runtime.definitions import Definitions
from flowstore.store.records import (
    Change,
    CheckpointChange,
    Claim,
    EventChange,
    NewRun,
    NodeChange,
    NodeStatus,
    RunId,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from flowstore.definition.graph import Graph
    from flowstore.runtime.executor import Observer
    from flowstore.runtime.models import Run
    from flowstore.store.protocol import Store

__all__ = ["RunForking", "forked_changes"]


class RunForking:
    """`Engine.fork` (mixed into `Engine`)."""

    worker_id: Any
    lease_seconds: float
    _definitions: Definitions

    if TYPE_CHECKING:  # provided by `Engine` and its other parts

        @property
        def store(self) -> Store: ...

        def _opened(self, value: Any) -> Any: ...

        def _new_run(
            self, graph: Graph, inputs: Mapping[str, Any], *, owned: bool = False
        ) -> NewRun: ...

        async def _drive(
            self,
            run_id: RunId,
            graph: Graph,
            inputs: Any,
            observe: Observer | None,
            attempt: Claim | NewRun | None,
            again: Callable[[], Awaitable[Claim | NewRun | None]],
        ) -> Run: ...

        async def _take(self, run_id: RunId) -> Claim | None: ...

    async def fork(
        self,
        run_id: str,
        from_node: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        version: str | None = None,
        observe: Observer | None = None,
    ) -> Run:
        """Start a new run from run `run_id`, executing `from_node` and what depends on it,
        here, and return it once it has ended; every other node keeps its outcome from the
        source run (its output, or its skip), and runs no more.

        Args:
            run_id: The source run (any status; what it committed is what is kept).
            from_node: The first node to execute again.
            inputs: Inputs laid over the source run's (the others stay as they were).
            version: The registered version of the workflow to run (default: the one
                registered last).
            observe: Told of every batch of transitions once it is committed.

        Raises:
            RunNotFound: No run has this id.
            ExecutionError: The workflow, that version of it, or the node is not registered
                here, or the node is inside a loop's body.
            InvalidValue: The inputs do not match the workflow's.
        """
        source = await self.store.get_run(RunId(run_id))
        graph = self._fork_graph(source.workflow, version)
        changes = await forked_changes(
            self.store, Shape.of_graph(graph), graph.name, source.id, from_node
        )
        checked = validate_inputs(graph, {**self._opened(source.inputs), **(inputs or {})})
        new = self.store.plan_run(self._new_run(graph, checked, owned=True))
        assert new.id is not None
        await self.store.record_transitions(new.id, 1, changes, create=new)
        record = await self.store.get_run(new.id)
        assert record.lease_expires_at is not None  # owned by this engine from its creation
        claim = Claim(record, self.worker_id, record.fencing, record.lease_expires_at)
        return await self._drive(
            new.id, graph, checked, observe, claim, functools.partial(self._take, new.id)
        )

    def _fork_graph(self, workflow: str, version: str | None) -> Graph:
        """The registered definition a fork runs: the newest, or the one of `version`."""
        if version is None:
            return self._definitions.named(workflow)
        for graph in self._definitions.by_hash.values():
            if graph.name == workflow and graph.spec.version == version:
                return graph
        known = sorted(
            graph.spec.version
            for graph in self._definitions.by_hash.values()
            if graph.name == workflow
        )
        raise ExecutionError(
            f"version {version!r} of workflow {workflow!r} is not registered here "
            f"(registered: {', '.join(map(repr, known)) or 'none'})"
        )


async def forked_changes(
    store: Store, shape: Shape, workflow: str, run_id: RunId, from_node: str
) -> list[Change]:
    """The changes a fork of run `run_id` from `from_node` starts with: a `forked` event,
    the outcome of every node it keeps (each one not downstream of `from_node`: its output,
    or its skip), and the iteration each loop it keeps was in.

    Raises:
        ExecutionError: The workflow has no such node, or it is inside a loop's body.
    """
    if from_node not in shape.upstream:
        raise ExecutionError(
            f"workflow {workflow!r} has no node {from_node!r} to fork run {run_id} from "
            f"(its nodes: {', '.join(shape.upstream)})"
        )
    for loop, body in shape.loop_bodies().items():
        if from_node in body and from_node != shape.loops[loop]:
            raise ExecutionError(
                f"node {from_node!r} is inside the body of loop {loop!r}: fork from "
                "the node the loop goes back to, or one before it"
            )
    again = shape.closure(from_node, "down")
    changes: list[Change] = [EventChange("forked", {"from_run": run_id, "from_node": from_node})]
    for execution in await store.read_node_executions(run_id):
        if execution.node not in shape.upstream or execution.node in again:
            continue
        if execution.status is NodeStatus.SUCCEEDED:
            changes.append(
                NodeChange(
                    execution.node,
                    execution.status,
                    key=execution.key,
                    attempt=execution.attempt,
                    output=execution.output,
                )
            )
        elif execution.status is NodeStatus.SKIPPED:
            changes.append(NodeChange(execution.node, execution.status, key=execution.key))
    checkpoint = await store.read_checkpoint(run_id)
    iterations = ((checkpoint.state if checkpoint else None) or {}).get("loops") or {}
    kept = {
        loop: n for loop, n in iterations.items() if loop in shape.upstream and loop not in again
    }
    if kept:  # the loops it keeps carry on in the iteration they were in
        changes.append(CheckpointChange({"loops": kept}))
    return changes
