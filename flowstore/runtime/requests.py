"""Requests made of runs by id or by workflow: `Engine.submit`, `Engine.signal` and
`Engine.cancel` (mixed into `Engine`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flowstore.runtime.submission import checked_signal, queue_of, submit_run
from flowstore.store.records import RunId, Signal

if TYPE_CHECKING:
    from flowstore.definition.builder import Workflow
    from flowstore.definition.graph import Graph
    from flowstore.runtime.definitions import Definitions
    from flowstore.runtime.models import Run
    from flowstore.runtime.ownership import HeldRuns
    from flowstore.store.protocol import Store
    from flowstore.store.records import NewRun, RunRecord

__all__ = ["RunRequests"]


class RunRequests:
    """`Engine.submit`, `Engine.signal` and `Engine.cancel` (mixed into `Engine`)."""

    _held: HeldRuns
    _definitions: Definitions

    if TYPE_CHECKING:  # provided by `Engine` and its other parts

        @property
        def store(self) -> Store: ...

        def _wake_loops(self) -> None: ...

        def _checked(
            self, workflow: Workflow, inputs: Mapping[str, Any] | None
        ) -> tuple[Graph, dict[str, Any]]: ...

        def _new_run(
            self,
            graph: Graph,
            inputs: Mapping[str, Any],
            *,
            owned: bool = False,
            id: RunId | None = None,
            parent_run_id: RunId | None = None,
            priority: int = 0,
            queue: str | None = None,
            queue_key: str | None = None,
        ) -> NewRun: ...

        def _run(self, record: RunRecord) -> Run: ...

        def _run_ended(self, run_id: RunId) -> None: ...

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run: at once when it is queued; when it runs, its owner (this engine or
        another process) cancels its running nodes and ends it `cancelled` within a second
        or so. Returns the run as it is now; `wait` for it to end."""
        record = await self.store.request_cancel(RunId(run_id))
        held = self._held.get(record.id)
        if held is not None:
            held.cancelled.set()
        if record.status.is_terminal:
            self._run_ended(record.id)
        return self._run(record)

    async def submit(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        priority: int = 0,
        queue: str | None = None,
        queue_key: str | None = None,
    ) -> str:
        """Queue a run durably and return its id; a worker of any engine that knows the
        workflow executes it (this engine's own workers are woken at once). With `run_id`,
        submitting again is harmless: the run that has that id is returned.

        In a queue (`queue`, else the workflow's `config.queue`), the run waits until the
        queue's limits let a worker start it; `queue_key` (else the input the workflow's
        `config.queue_key` names) is its key for a per-key limit. Higher `priority` runs
        are started first, in or out of queues.

        Raises:
            InvalidValue: The inputs do not match the workflow's declared inputs.
            IntegrityConflict: `run_id` is the id of a run of another workflow.
            QueueNotFound: No queue of that name is stored.
        """
        graph, checked = self._checked(workflow, inputs)
        queue, queue_key = queue_of(graph.spec.config, checked, queue=queue, queue_key=queue_key)
        new = self._new_run(
            graph,
            checked,
            id=RunId(run_id) if run_id else None,
            priority=priority,
            queue=queue,
            queue_key=queue_key,
        )
        record = await submit_run(self.store, new)
        self._wake_loops()
        return str(record.id)

    async def signal(
        self, run_id: str, name: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> Signal:
        """Send the run a signal named `name` with a JSON `payload`; a node that waits for it
        (`NodeContext.wait_for_signal`) takes it, once. Sent before the wait, it is kept until
        then. With `idempotency_key`, sending again is harmless.

        Raises:
            InvalidValue: The payload does not match the model the workflow declares for the
                signal (`Workflow(signals=...)`); nothing was sent.
            RunNotFound: No run has this id.
            RunEnded: The run has ended.
        """
        record = await self.store.get_run(RunId(run_id))
        graph = self._definitions.by_hash.get(record.graph_hash)
        model = None if graph is None else graph.signal_models.get(name)
        payload = checked_signal(model, run_id, name, payload)
        signal: Signal = await self.store.send_signal(
            RunId(run_id), name, payload, idempotency_key=idempotency_key
        )
        self._wake_loops()
        return signal
