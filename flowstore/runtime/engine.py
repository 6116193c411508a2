"""`Engine`: the entry point that runs workflows durably against a store.

```python
async with Engine("sqlite+aiosqlite:///flowstore.db", workflows=[flow]) as engine:
    run = await engine.run(flow, {"ticket": "disk full"})
```

An engine is one worker: it registers itself, heartbeats (renewing the leases of the runs it
executes), and executes runs it creates (`run`) or takes over (`resume`). A run whose owner
process on this host no longer exists is taken over at once; elsewhere, once its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from flowstore.definition.builder import Workflow
from flowstore.definition.graph import Graph
from flowstore.definition.spec import MemoryConfig
from flowstore.definition.validation import prepare_validators, validate_inputs
from flowstore.errors import ExecutionError
from flowstore.hooks import HookKind, Hooks
from flowstore.runtime.children import run_child
from flowstore.runtime.executor import Observer, execute_run
from flowstore.runtime.memory import Memory
from flowstore.runtime.models import Run
from flowstore.runtime.resources import SharedResources
from flowstore.runtime.streams import LiveRuns
from flowstore.runtime.streams import follow as follow_run
from flowstore.runtime.worker import ClaimLoop, dead_local_workers, heartbeat
from flowstore.store.records import (
    Claim,
    NewRun,
    RunId,
    RunQuery,
    RunStatus,
    WorkerId,
    WorkerInfo,
)

if TYPE_CHECKING:
    from flowstore.events import StreamEvent
    from flowstore.store.engine import StoreSettings

__all__ = ["Engine"]

_log = logging.getLogger("flowstore.engine")


class Engine:
    """Runs workflows durably; use it as an async context manager.

    Args:
        url: The database URL; else `FLOWSTORE_DATABASE_URL`, else
            `sqlite+aiosqlite:///flowstore.db`.
        workflows: The workflows this engine can run and resume, by name; its workers claim
            submitted runs of these, and recover their runs whose owner died.
        lease_seconds: How long a run stays owned without a heartbeat; heartbeats come three
            times per lease.
        workers: Worker tasks claiming submitted runs (0: this engine only runs what it is
            asked to run directly).
        poll_seconds: The longest a worker sleeps between looks for work.
        telemetry: Store metrics and trace spans with every run (see `runtime/telemetry.py`).
        debug: Run every workflow in debug mode (as its `config.debug` does): each node's
            inputs, output, attempts and timings logged at DEBUG level on the
            `flowstore.run.<workflow>` logger, and a span kept for every attempt.
        resources: Shared objects nodes receive by parameter name (workflows list them in
            `resources`), opened when the engine starts and closed when it stops: an async
            context manager (entered and exited), a function returning one or an awaitable
            (called at start), or any other object (given as it is).
        settings: How to open the store: the URL, PostgreSQL's connection pool (`pool_size`,
            `max_overflow`), SQLite's `synchronous` level, value limits. Its URL wins over
            `url`.
        tracer: An OpenTelemetry tracer every run's spans are exported to when it ends;
            by default the global provider's, when the `otel` extra is installed.
        secret_fields: Field names whose values are kept out of every run's stored errors
            and debug logs, with each workflow's own `config.secret_fields`.
        memory: Limits of the conversation memory written through `Engine.memory`.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        workflows: Sequence[Workflow] = (),
        lease_seconds: float = 30.0,
        workers: int = 1,
        poll_seconds: float = 1.0,
        telemetry: bool = True,
        debug: bool = False,
        resources: Mapping[str, Any] | None = None,
        settings: StoreSettings | None = None,
        tracer: Any = None,
        secret_fields: Sequence[str] = (),
        memory: MemoryConfig | None = None,
    ) -> None:
        from flowstore.store.engine import DEFAULT_URL

        self.url = (
            settings.url
            if settings is not None
            else url or os.environ.get("FLOWSTORE_DATABASE_URL") or DEFAULT_URL
        )
        self._settings = settings
        self._tracer = tracer
        self._secret_fields = tuple(secret_fields)
        self._memory_config = memory or MemoryConfig()
        self._resources = SharedResources(resources or {})
        self.lease_seconds = lease_seconds
        self.worker_id = WorkerId(f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
        self._workflows: dict[str, Workflow] = {}
        for workflow in workflows:
            self.register(workflow)
        self._store: Any = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._worker_count = workers
        self._poll_seconds = poll_seconds
        self._telemetry = telemetry
        self._debug = debug
        self.hooks = Hooks()
        self._loops: list[ClaimLoop] = []
        self._loop_tasks: list[asyncio.Task[None]] = []
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # Runs executing in this engine, and the event that cancels each one.
        self._executing: dict[RunId, asyncio.Event] = {}
        self._live = LiveRuns()

    @property
    def resources(self) -> dict[str, Any]:
        """The shared resources by name, while the engine is open."""
        return self._resources.opened

    def on(self, kind: HookKind, hook: Any = None) -> Any:
        """Register a hook told of `kind` events of every run this engine executes (a
        decorator too); see `flowstore.hooks`."""
        return self.hooks.on(kind, hook)

    def register(self, workflow: Workflow) -> None:
        """Make a workflow runnable and resumable by this engine (compiling it now), with the
        workflows it runs as subworkflows. Register a DSL workflow's children before it."""
        for child in workflow.subworkflows:
            self.register(child)
        graph = workflow.compile(
            workflows={name: known.spec for name, known in self._workflows.items()}
        )
        self._workflows[workflow.name] = workflow
        # What every run of it needs, made once here rather than on its first run.
        prepare_validators(graph)
        graph.stored_spec()

    async def __aenter__(self) -> Self:
        from flowstore.store.sql import open_store

        await self._resources.open()
        try:
            self._store = await open_store(self._settings or self.url)
        except BaseException:
            await self._resources.close()
            raise
        now = datetime.now(UTC)
        await self._store.register_worker(
            WorkerInfo(self.worker_id, socket.gethostname(), os.getpid(), now, now)
        )
        self._heartbeat = asyncio.create_task(
            heartbeat(self._store, self.worker_id, self.lease_seconds, self._executing)
        )
        for _ in range(self._worker_count):
            loop = ClaimLoop(
                self._store,
                self.worker_id,
                self._workflows,
                self.lease_seconds,
                dead_workers=self._dead_local_workers,
                finished=self._run_ended,
                poll_seconds=self._poll_seconds,
                executing=self._executing,
                execute=self._execute_claimed,
            )
            self._loops.append(loop)
            self._loop_tasks.append(asyncio.create_task(loop.run_forever()))
        return self

    async def __aexit__(self, *_: object) -> None:
        for task in [*self._loop_tasks, *([self._heartbeat] if self._heartbeat else [])]:
            task.cancel()
        for task in [*self._loop_tasks, *([self._heartbeat] if self._heartbeat else [])]:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops.clear()
        self._loop_tasks.clear()
        try:
            if self._store is not None:
                await self._store.remove_worker(self.worker_id)
                await self._store.close()
                self._store = None
        finally:
            await self._resources.close()

    @property
    def memory(self) -> Memory:
        """Conversation threads and entities, written at once (`flowstore.runtime.memory`)."""
        return Memory(self.store, self._memory_config)

    @property
    def store(self) -> Any:
        """The engine's store (open inside `async with`)."""
        if self._store is None:
            raise ExecutionError("the engine is not open: use `async with Engine(...) as engine`")
        return self._store

    # ------------------------------------------------------------------ running

    async def run(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        observe: Observer | None = None,
    ) -> Run:
        """Execute a run of `workflow` here, durably, and return it once it has ended.

        `observe` is told of every batch of transitions once it is committed.

        Raises:
            InvalidValue: The inputs do not match the workflow's declared inputs.
            LeaseLost: Another worker took the run over (this one was stalled past its lease).
        """
        graph, checked = self._checked(workflow, inputs)
        new = self._new_run(graph, checked, id=RunId(run_id) if run_id else None, owned=True)
        return await self.get_run(await self._execute(new, graph, checked, observe))

    def _checked(
        self, workflow: Workflow, inputs: Mapping[str, Any] | None
    ) -> tuple[Graph, dict[str, Any]]:
        """`workflow` compiled (and registered here if it was not) and `inputs` validated."""
        if workflow.name not in self._workflows:
            self.register(workflow)
        graph = workflow.compile()
        return graph, validate_inputs(graph, inputs or {})

    def _new_run(
        self,
        graph: Graph,
        inputs: Mapping[str, Any],
        *,
        owned: bool = False,
        id: RunId | None = None,
        parent_run_id: RunId | None = None,
        priority: int = 0,
    ) -> NewRun:
        """A run of `graph`, queued, or owned by this engine from the start."""
        return NewRun(
            workflow=graph.name,
            version=graph.spec.version,
            graph_hash=graph.hash,
            inputs=inputs,
            spec=graph.stored_spec(),
            id=id,
            parent_run_id=parent_run_id,
            priority=priority,
            owner=self.worker_id if owned else None,
            lease_seconds=self.lease_seconds,
        )

    async def _execute_claimed(
        self,
        store: Any,
        claim: Claim,
        graph: Graph,
        inputs: Mapping[str, Any],
        *,
        cancelled: asyncio.Event,
        observe: Observer | None = None,
        create: NewRun | None = None,
    ) -> RunStatus:
        """Execute a claimed run with this engine's settings (a worker loop's, or `run`'s);
        with `create`, the planned run the claim is of (see `execute_run`)."""
        with self._live.executing(claim.run.id) as live:
            return await execute_run(
                store,
                claim,
                graph,
                inputs,
                observe=observe,
                cancelled=cancelled,
                run_child=functools.partial(run_child, self),
                telemetry=self._telemetry,
                hooks=self._hooks_for(graph.name),
                debug=self._debug,
                resources=self.resources,
                tracer=self._tracer_for_runs(),
                secret_fields=self._secret_fields,
                live=live,
                create=create,
            )

    def _tracer_for_runs(self) -> Any:
        # Only an application that imported OpenTelemetry can have configured a provider;
        # until one has, the bridge module is not even imported.
        if self._tracer is None and self._telemetry and "opentelemetry" in sys.modules:
            from flowstore.runtime import otel

            self._tracer = otel.default_tracer()
        return self._tracer

    def _hooks_for(self, workflow: str) -> Hooks | None:
        known = self._workflows.get(workflow)
        hooks = Hooks.merged([self.hooks] + ([known.hooks] if known is not None else []))
        return hooks or None

    async def _execute(
        self, run: Claim | NewRun, graph: Graph, inputs: Mapping[str, Any], observe: Observer | None
    ) -> RunId:
        """Execute a claimed run here; or create a run owned by this engine (a `NewRun`) and
        execute it, stored with its first commit (its first nodes' start) in one transaction.
        Returns the run's id."""
        create = None
        if isinstance(run, NewRun):
            create = self.store.plan_run(run)
            record = create.record()
            run = Claim(record, self.worker_id, record.fencing, record.lease_expires_at)
        run_id: RunId = run.run.id
        cancelled = self._executing[run_id] = asyncio.Event()
        try:
            await self._execute_claimed(
                self.store, run, graph, inputs, cancelled=cancelled, observe=observe, create=create
            )
        finally:
            self._executing.pop(run_id, None)
            self._run_ended(run_id)
        return run_id

    async def cancel(self, run_id: str) -> Run:
        """Cancel a run: at once when it is queued; when it runs, its owner (this engine or
        another process) cancels its running nodes and ends it `cancelled` within a second
        or so. Returns the run as it is now; `wait` for it to end."""
        record = await self.store.request_cancel(RunId(run_id))
        if record.id in self._executing:
            self._executing[record.id].set()
        if record.status.is_terminal:
            self._run_ended(record.id)
        return Run.from_record(record)

    async def resume(
        self,
        run_id: str,
        *,
        allow_changed_definition: bool = False,
        observe: Observer | None = None,
    ) -> Run:
        """Continue an interrupted or failed run from its last committed state, here.

        Nodes that succeeded are not run again; the node that failed runs again. A run whose
        owner is alive and holds its lease is refused; so is a run whose workflow changed
        since it started, unless `allow_changed_definition` says to run the new definition
        over the committed results.
        """
        record = await self.store.get_run(RunId(run_id))
        if record.status.is_terminal and record.status is not RunStatus.FAILED:
            raise ExecutionError(f"run {run_id} has already ended ({record.status.value})")
        graph = self._graph_for(record.workflow)
        if graph.hash != record.graph_hash and not allow_changed_definition:
            raise ExecutionError(
                f"run {run_id} started under another definition of workflow "
                f"{record.workflow!r} (graph {record.graph_hash[:12]}, now {graph.hash[:12]}): "
                "resume it with allow_changed_definition=True to run the new definition over "
                "its committed results, or deploy the definition it started with"
            )
        if record.status is RunStatus.FAILED:  # its failed nodes run again, the rest stays
            claim = await self.store.reopen_run(
                RunId(run_id), self.worker_id, lease_seconds=self.lease_seconds
            )
        else:
            claim = await self.store.claim_run(
                self.worker_id,
                lease_seconds=self.lease_seconds,
                run_id=RunId(run_id),
                steal_from=await self._dead_local_workers(),
            )
        if claim is None:
            record = await self.store.get_run(RunId(run_id))
            if record.lease_owner == self.worker_id:
                return await self.wait(run_id)  # this engine's own worker took it over already
            raise ExecutionError(
                f"run {run_id} is owned by live worker {record.lease_owner} until "
                f"{record.lease_expires_at}: it is running there"
            )
        inputs = validate_inputs(graph, record.inputs)
        await self._execute(claim, graph, inputs, observe)
        return await self.get_run(run_id)

    async def submit(
        self, workflow: Workflow, inputs: Mapping[str, Any] | None = None, *, priority: int = 0
    ) -> str:
        """Queue a run durably and return its id; a worker of any engine that knows the
        workflow executes it (this engine's own workers are woken at once)."""
        graph, checked = self._checked(workflow, inputs)
        record = await self.store.create_run(self._new_run(graph, checked, priority=priority))
        for loop in self._loops:
            loop.wake()
        return str(record.id)

    async def wait(self, run_id: str) -> Run:
        """Wait until a run has ended, wherever it runs, and return it.

        Bound the wait with `asyncio.timeout(...)` around the call.
        """
        delay = 0.01
        while True:
            run = await self.get_run(run_id)
            if run.status.is_terminal:
                return run
            ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(run_id, []).append(ended)
            with contextlib.suppress(TimeoutError):  # ended here, or poll: it may run elsewhere
                await asyncio.wait_for(asyncio.shield(ended), timeout=delay)
            delay = min(delay * 2, self._poll_seconds)

    def _run_ended(self, run_id: RunId) -> None:
        for waiter in self._waiters.pop(str(run_id), []):
            if not waiter.done():
                waiter.set_result(None)

    def _graph_for(self, workflow: str) -> Graph:
        if workflow not in self._workflows:
            known = ", ".join(sorted(self._workflows)) or "none"
            raise ExecutionError(
                f"workflow {workflow!r} is not registered with this engine (registered: {known})"
            )
        return self._workflows[workflow].compile()

    async def _dead_local_workers(self) -> list[WorkerId]:
        return await dead_local_workers(self.store, self.worker_id)

    # ------------------------------------------------------------------ reading runs

    def events(
        self, run_id: str, *, after: int = 0, follow: bool = True
    ) -> AsyncIterator[StreamEvent]:
        """The run's events after sequence number `after`, in order, each once (see
        `flowstore.events`): with `follow`, live until the run ends, wherever it executes;
        else those in its log now. Raises `RunNotFound` once iterated, for an unknown run."""

        async def events() -> AsyncIterator[StreamEvent]:
            await self.store.get_run(RunId(run_id))
            async for event in follow_run(
                self.store, self._live, RunId(run_id), after=after, live=follow
            ):
                yield event

        return events()

    async def stream(
        self, workflow: Workflow, inputs: Mapping[str, Any] | None = None
    ) -> AsyncIterator[StreamEvent]:
        """Execute a run of `workflow` here, as `run` does, yielding its events as they happen
        (tokens included), up to the run's end. Leaving the loop early cancels the run."""
        validate_inputs(workflow.compile(), inputs or {})  # raised here, not in a task
        run_id = str(uuid.uuid4())
        running = asyncio.ensure_future(self.run(workflow, inputs, run_id=run_id))
        try:
            async for event in follow_run(self.store, self._live, RunId(run_id), executing=running):
                yield event
            await running
        finally:
            if not running.done():
                running.cancel()
                with contextlib.suppress(BaseException):
                    await running

    async def get_run(self, run_id: str) -> Run:
        """One run. Raises `RunNotFound`."""
        return Run.from_record(await self.store.get_run(RunId(run_id)))

    async def list_runs(
        self,
        *,
        workflow: str | None = None,
        status: RunStatus | Sequence[RunStatus] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
    ) -> list[Run]:
        """Runs, newest first, filtered by workflow, status and creation time."""
        statuses = None
        if status is not None:
            statuses = frozenset([status] if isinstance(status, RunStatus) else status)
        query = RunQuery(
            workflow=workflow,
            statuses=statuses,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
        )
        return [Run.from_record(record) for record in await self.store.list_runs(query)]
