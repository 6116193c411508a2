"""`Client`: submit runs and follow them from a process that does not execute them.

```python
async with Client("postgresql://app@db/flows") as client:
    run_id = await client.submit("triage", {"ticket": "disk full"}, run_id="ticket-4711")
    run = await client.wait(run_id)
```

A web process or a script that hands work to `flowstore worker` processes uses a `Client`: it
needs no workflow code (runs are submitted by workflow name, against the definitions the
workers stored), registers no worker, executes nothing, and holds no lease. An `Engine` is for
the processes that execute runs.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Self

from flowstore.definition.resolution import resolve_call
from flowstore.definition.shape import Shape
from flowstore.definition.spec import ExecutionConfig, WorkflowSpec
from flowstore.definition.validation import validate_inputs_by_spec
from flowstore.errors import ExecutionError
from flowstore.runtime.forking import forked_changes
from flowstore.runtime.models import Run
from flowstore.runtime.reading import RunReading
from flowstore.runtime.schedules import ScheduleControl
from flowstore.runtime.sealing import Sealer
from flowstore.runtime.streams import LiveRuns
from flowstore.runtime.submission import checked_signal, choose_graph, queue_of, submit_run
from flowstore.runtime.waiting import RunWaiters
from flowstore.store.records import NewRun, RunId, Signal, StoredGraph

if TYPE_CHECKING:
    from flowstore.events import StreamEvent
    from flowstore.store.engine import StoreSettings

__all__ = ["Client"]

_CHOICE_SECONDS = 5.0


class Client(RunReading, ScheduleControl):
    """Submits, reads, follows and cancels runs; use it as an async context manager.

    Args:
        url: The database URL; else `FLOWSTORE_DATABASE_URL`, else
            `sqlite+aiosqlite:///flowstore.db`.
        settings: How to open the store (pool size, ...); its URL wins over `url`.
        poll_seconds: The longest `wait` and `events` sleep between looks at a run.
        secrets_key: The key that seals secret fields (`Engine(secrets_key=...)`); else
            `FLOWSTORE_SECRETS_KEY`. Without one, inputs are stored as given and sealed
            values read back sealed.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: StoreSettings | None = None,
        poll_seconds: float = 1.0,
        secrets_key: str | None = None,
    ) -> None:
        from flowstore.store.engine import database_url

        self.url = settings.url if settings is not None else database_url(url)
        self._settings = settings
        self._sealer = Sealer.of(secrets_key)
        self._poll_seconds = poll_seconds
        self._live = LiveRuns()
        self._waiting = RunWaiters(lambda: self.store, poll_seconds)
        self._store: Any = None
        self._signal_paths: dict[str, dict[str, str]] = {}
        self._chosen: dict[tuple[str, str | None], tuple[float, StoredGraph, WorkflowSpec]] = {}

    async def __aenter__(self) -> Self:
        from flowstore.store.sql import open_store

        self._store = await open_store(self._settings or self.url)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._waiting.close()
        if self._store is not None:
            await self._store.close()
            self._store = None

    async def submit(
        self,
        workflow: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
        run_id: str | None = None,
        priority: int = 0,
        queue: str | None = None,
        queue_key: str | None = None,
    ) -> str:
        """Queue a run of the workflow named `workflow` and return its id; a worker that has
        its definition executes it.

        The run executes the newest stored definition of the workflow (of `version`, when
        given) that a live worker has. With `run_id`, submitting again is harmless: the run
        that has that id is returned (an id of another workflow's run is refused). In a
        queue (`queue`, else the workflow's `config.queue`) it waits until the queue's limits
        let a worker start it, as `Engine.submit` says.

        Raises:
            ExecutionError: No definition of the workflow is stored (no worker has run it).
            InvalidValue: An input is missing, unknown, or not of its declared JSON type.
            IntegrityConflict: `run_id` is the id of a run of another workflow.
            QueueNotFound: No queue of that name is stored.
        """
        graph, spec = await self._definition(workflow, version)
        checked = validate_inputs_by_spec(spec, inputs or {})
        queue, queue_key = queue_of(spec.config, checked, queue=queue, queue_key=queue_key)
        if self._sealer is not None:
            checked = self._sealer.for_fields(spec.config.secret_fields).seal(checked)
        new = NewRun(
            workflow=graph.workflow,
            version=graph.version,
            graph_hash=graph.hash,
            inputs=checked,
            id=RunId(run_id) if run_id else None,
            priority=priority,
            queue=queue,
            queue_key=queue_key,
        )
        return str((await submit_run(self.store, new)).id)

    async def _schedule_inputs(
        self, workflow: Any, inputs: Mapping[str, Any]
    ) -> tuple[str, ExecutionConfig, dict[str, Any]]:
        name = workflow if isinstance(workflow, str) else workflow.name
        graph, spec = await self._definition(name, None)
        checked = validate_inputs_by_spec(spec, inputs)
        if self._sealer is not None:
            checked = self._sealer.for_fields(spec.config.secret_fields).seal(checked)
        return graph.workflow, spec.config, checked

    async def _definition(
        self, workflow: str, version: str | None
    ) -> tuple[StoredGraph, WorkflowSpec]:
        """The definition `submit` uses, chosen again at most once per `_CHOICE_SECONDS`: a
        burst of submissions costs one choice, and a newly deployed version is picked up
        within seconds."""
        now = time.monotonic()
        chosen = self._chosen.get((workflow, version))
        if chosen is None or chosen[0] < now:
            graph = await choose_graph(self.store, workflow, version)
            spec = WorkflowSpec.model_validate(graph.spec)
            chosen = self._chosen[(workflow, version)] = (now + _CHOICE_SECONDS, graph, spec)
        return chosen[1], chosen[2]

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run: at once when it is queued; when it runs, its owner cancels its
        running nodes and ends it `cancelled` within a second or so. Returns the run as it
        is now."""
        return self._run(await self.store.request_cancel(RunId(run_id)))

    async def resume(self, run_id: str) -> Run:
        """Hand a failed run back to the workers: it is queued again, and a worker with its
        definition continues it from what it committed (the nodes that succeeded are not run
        again; the one that failed is). `Engine.resume` does the same in its own process.
        Returns the run as it is now.

        Raises:
            RunNotFound: No run has this id.
            ExecutionError: The run has not failed (it runs, waits, or ended otherwise).
        """
        record = await self.store.requeue_failed_run(RunId(run_id))
        if record is not None:
            return self._run(record)
        now = await self.store.get_run(RunId(run_id))
        raise ExecutionError(
            f"run {run_id} is {now.status.value}: only a failed run is handed back to the workers"
        )

    async def fork(
        self,
        run_id: str,
        from_node: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        version: str | None = None,
    ) -> str:
        """Queue a new run from run `run_id` for the workers, as `Engine.fork` starts one
        here: it executes `from_node` and what depends on it, and every other node keeps
        its outcome from the source run. It runs the stored definition of the workflow that
        `submit` would choose (of `version`, when given), with the source's inputs and
        `inputs` laid over them. Returns the new run's id.

        Raises:
            RunNotFound: No run has this id.
            ExecutionError: No definition of the workflow (or of `version`) is stored, it
                has no such node, or the node is inside a loop's body.
            InvalidValue: The inputs do not match the workflow's.
        """
        source = await self.store.get_run(RunId(run_id))
        graph, spec = await self._definition(source.workflow, version)
        changes = await forked_changes(
            self.store, Shape.of_spec(spec), source.workflow, source.id, from_node
        )
        checked = validate_inputs_by_spec(spec, {**self._opened(source.inputs), **(inputs or {})})
        queue, queue_key = queue_of(spec.config, checked, queue=None, queue_key=None)
        if self._sealer is not None:
            checked = self._sealer.for_fields(spec.config.secret_fields).seal(checked)
        new = self.store.plan_run(
            NewRun(
                workflow=graph.workflow,
                version=graph.version,
                graph_hash=graph.hash,
                inputs=checked,
                queue=queue,
                queue_key=queue_key,
            )
        )
        assert new.id is not None
        # Created queued with what it keeps, in one transaction: a worker that claims it
        # finds it as a run taken up again, never half made.
        await self.store.record_transitions(new.id, 0, changes, create=new)
        return str(new.id)

    async def signal(
        self, run_id: str, name: str, payload: Any = None, *, idempotency_key: str | None = None
    ) -> Signal:
        """Send the run a signal (as `Engine.signal`): a node that waits for it takes it,
        once; sent early, it is kept until then; `idempotency_key` makes sending twice
        harmless.

        Raises:
            InvalidValue: The payload does not match the model the workflow declares for the
                signal; nothing was sent.
            RunNotFound: No run has this id.
            RunEnded: The run has ended.
        """
        payload = checked_signal(await self._signal_model(run_id, name), run_id, name, payload)
        signal: Signal = await self.store.send_signal(
            RunId(run_id), name, payload, idempotency_key=idempotency_key
        )
        return signal

    async def _signal_model(self, run_id: str, name: str) -> Any:
        """The model the run's workflow declares for the signal, when this process can import
        it (else the worker that takes the signal checks it)."""
        record = await self.store.get_run(RunId(run_id))
        declared = self._signal_paths.get(record.graph_hash)
        if declared is None:  # a definition never changes under its hash: read it once
            stored = await self.store.get_graph_spec(record.graph_hash)
            declared = self._signal_paths[record.graph_hash] = dict(
                WorkflowSpec.model_validate(stored).signals
            )
        path = declared.get(name)
        if path is None:
            return None
        try:
            return resolve_call(path)
        except LookupError:
            return None

    async def stream(
        self,
        workflow: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        version: str | None = None,
        run_id: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Submit a run (as `submit`) and yield its events, wherever it executes, until it
        ends. Leaving the loop early leaves the run going."""
        submitted = await self.submit(workflow, inputs, version=version, run_id=run_id)
        async for event in self.events(submitted):
            yield event
