"""`Engine`: the entry point that runs workflows durably against a store.

```python
async with Engine("sqlite+aiosqlite:///flowstore.db", workflows=[flow]) as engine:
    run = await engine.run(flow, {"ticket": "disk full"})
```

An engine is one worker: it registers itself, heartbeats (renewing the leases of the runs it
executes, and only those), and executes runs it creates (`run`) or takes over (`resume`). Every
run it executes is held in one scope (`ownership.hold_run`) that ends it or releases it on
every way out. A run whose owner process on this host no longer exists is taken over at once;
elsewhere, once its lease expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, overload

from flowstore.definition.builder import Workflow
from flowstore.definition.graph import Graph
from flowstore.definition.spec import MemoryConfig
from flowstore.definition.validation import validate_inputs
from flowstore.errors import (
    ConfigurationError,
    StoreError,
)
from flowstore.hooks import H, HookKind, Hooks
from flowstore.logs import engine_logger, redacting
from flowstore.runtime.children import EngineChildren, run_child
from flowstore.runtime.definitions import Definitions
from flowstore.runtime.engine_schedules import EngineSchedules
from flowstore.runtime.executor import Observer, execute_run
from flowstore.runtime.forking import RunForking
from flowstore.runtime.memory import Memory
from flowstore.runtime.models import Run
from flowstore.runtime.ownership import HeldRun, HeldRuns, heartbeat, hold_run
from flowstore.runtime.reading import RunReading
from flowstore.runtime.redaction import Redactor
from flowstore.runtime.requests import RunRequests
from flowstore.runtime.resources import SharedResources
from flowstore.runtime.resumption import RunTakeover
from flowstore.runtime.retention import Retention, keep_deleting
from flowstore.runtime.schedules import ScheduleLoop
from flowstore.runtime.sealing import Sealer
from flowstore.runtime.streams import LiveRuns
from flowstore.runtime.streams import follow as follow_run
from flowstore.runtime.submission import queue_of, submit_run
from flowstore.runtime.waiting import RunWaiters
from flowstore.runtime.worker import ClaimLoop, Trouble, dead_local_workers, process_identity
from flowstore.store.queue_records import Queue
from flowstore.store.records import (
    Claim,
    NewRun,
    RunId,
    RunStatus,
    WorkerId,
    WorkerInfo,
)

if TYPE_CHECKING:
    from flowstore.events import StreamEvent
    from flowstore.store.engine import StoreSettings

__all__ = ["Engine"]

_log = engine_logger("flowstore.engine")


class Engine(RunTakeover, RunRequests, RunForking, RunReading, EngineSchedules):
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
        grace_seconds: When the engine closes: how long the runs executing here may go on
            (no new run is claimed meanwhile) before what is left is released for another
            worker to take over at once.
        store_retry_seconds: How long `run` keeps taking its run up again while the store is
            unavailable under it (a lock held elsewhere, a dropped connection, a restart)
            before it raises `StoreUnavailable`; the run is released for any worker then.
        secrets_key: A key that encrypts the values of secret fields wherever they are
            stored (`flowstore.runtime.sealing`); else `FLOWSTORE_SECRETS_KEY`, else they are
            stored as given.
        retention: Delete runs that ended longer ago than it says, in the background, in
            short batches (`flowstore.runtime.retention`); `flowstore gc` does it by hand.
        queues: Queues to store when the engine starts (a queue of the same name has its
            limits replaced): runs submitted to one wait their turn under its limits, across
            every worker (`flowstore.Queue`).
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
        grace_seconds: float = 0.0,
        store_retry_seconds: float = 60.0,
        secrets_key: str | None = None,
        retention: Retention | None = None,
        queues: Sequence[Queue] = (),
    ) -> None:
        from flowstore.store.engine import database_url

        self.url = settings.url if settings is not None else database_url(url)
        self._settings = settings
        self._tracer = tracer
        self._secret_fields = tuple(secret_fields)
        self._sealer = Sealer.of(secrets_key)
        self._memory_config = memory or MemoryConfig()
        self._resources = SharedResources(resources or {})
        self.lease_seconds = lease_seconds
        self.worker_id = WorkerId(f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
        self._definitions = Definitions()
        for workflow in workflows:
            self.register(workflow)
        self._store: Any = None
        self._grace_seconds = grace_seconds
        self._store_retry_seconds = store_retry_seconds
        self._retention = retention
        self._queues = tuple(queues)
        self._retaining: asyncio.Task[None] | None = None
        self._ticking: ScheduleLoop | None = None
        self._ticking_task: asyncio.Task[None] | None = None  # `EngineSchedules`
        self._heartbeat: asyncio.Task[None] | None = None
        self._worker_count = workers
        self._poll_seconds = poll_seconds
        self._telemetry = telemetry
        self._debug = debug
        self.hooks = Hooks()
        self._loops: list[ClaimLoop] = []
        self._watching = contextlib.AsyncExitStack()
        self._loop_tasks: list[asyncio.Task[None]] = []
        self._waiting = RunWaiters(lambda: self.store, poll_seconds)
        # The runs executing here: the only ones whose leases the heartbeat renews.
        self._held = HeldRuns(lease_seconds)
        self._closing = False
        self.stopped = asyncio.Event()
        self.failure: BaseException | None = None
        self._live = LiveRuns()

    @property
    def resources(self) -> dict[str, Any]:
        """The shared resources by name, while the engine is open."""
        return self._resources.opened

    @overload
    def on(self, kind: HookKind, hook: None = None) -> Callable[[H], H]: ...

    @overload
    def on(self, kind: HookKind, hook: H) -> H: ...

    def on(self, kind: HookKind, hook: Any = None) -> Any:
        """Register a hook told of `kind` events of every run this engine executes (a
        decorator too); see `flowstore.hooks`."""
        return self.hooks.on(kind, hook)

    def register(self, workflow: Workflow) -> None:
        """Make a workflow runnable and resumable by this engine (compiling it now), with the
        workflows it runs as subworkflows. Register a DSL workflow's children before it.

        Several versions of one workflow (same name, another definition) may be registered
        side by side: each run executes under the definition it started with, and this
        engine's workers claim only runs of a definition registered here. New runs by name
        (subworkflows, the CLI) use the version registered last."""
        self._definitions.register(workflow)

    async def __aenter__(self) -> Self:
        from flowstore.store.sql import open_store

        await self._resources.open()
        try:
            self._store = await open_store(self._settings or self.url)
        except BaseException:
            await self._resources.close()
            raise
        if not self._store.settings.read_only:
            await self._store.warm_up()
        now = datetime.now(UTC)
        # The definitions its workers claim runs of (none without workers), for `flowstore
        # runs list` to tell which runs no live worker can take.
        claims = sorted(self._definitions.by_hash) if self._worker_count else []
        metadata = {**process_identity(), "graphs": claims}
        me = WorkerInfo(self.worker_id, socket.gethostname(), os.getpid(), now, now, metadata)
        await self._store.register_worker(me)
        # What a `Client` submits runs of by name, without the code.
        await self._store.register_graphs(self._definitions.stored())
        for queue in self._queues:
            await self._store.set_queue(queue)
        self._closing = False
        self._heartbeat = asyncio.create_task(heartbeat(self._store, me, self._held))
        if self._retention is not None:
            self._retaining = asyncio.create_task(keep_deleting(self._store, self._retention))
        if self._worker_count:  # woken when another process makes a run claimable
            await self._watching.enter_async_context(self._store.watch_work(self._work_heard))
        if self._worker_count:  # it starts the ticks of its workflows' schedules
            self._start_ticking(self._store, self._wake_loops)
        trouble = Trouble(self.worker_id)
        for _ in range(self._worker_count):
            loop = ClaimLoop(
                self._store,
                self.worker_id,
                self._claimable,
                self.lease_seconds,
                dead_workers=self._dead_local_workers,
                poll_seconds=self._poll_seconds,
                execute=self._execute_claim,
                trouble=trouble,
            )
            self._loops.append(loop)
            task = asyncio.create_task(loop.run_forever())
            task.add_done_callback(self._loop_ended)
            self._loop_tasks.append(task)
        return self

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A worker loop ended by itself only when nothing can be written any more (its
        database file is gone): the engine has stopped (`stopped`, with the `failure`)."""
        if not task.cancelled() and task.exception() is not None:
            self.failure = self.failure or task.exception()
            _log.error("engine %s stopped: %s", self.worker_id, task.exception())
            self.stopped.set()

    def _wake_loops(self) -> None:
        for loop in self._loops:
            loop.wake()

    def _work_heard(self, graph_hash: str) -> None:
        if not graph_hash or graph_hash in self._definitions.by_hash:
            for loop in self._loops:
                loop.wake()

    async def __aexit__(self, *_: object) -> None:
        await self._stop_ticking()
        await self.drain(self._grace_seconds)
        await self._watching.aclose()
        await _cancelled(self._retaining)
        self._retaining = None
        await self._waiting.close()
        await _cancelled(self._heartbeat)
        self._heartbeat = None
        try:
            if self._store is not None:
                try:
                    await self._store.remove_worker(self.worker_id)
                except StoreError as error:  # its row is forgotten by others in time
                    _log.warning("engine %s: removing its worker row: %s", self.worker_id, error)
                await self._store.close()
                self._store = None
        finally:
            await self._resources.close()

    @property
    def executing(self) -> int:
        """How many runs execute here now."""
        return len(self._held)

    async def drain(self, grace_seconds: float, *, at_once: asyncio.Event | None = None) -> None:
        """Stop claiming runs; give the runs executing here up to `grace_seconds` to end (or
        until `at_once` is set); then stop what is left, releasing each run for another
        worker to take over at once (see `ownership.hold_run`)."""
        for loop in self._loops:
            loop.stop()
        await self._held.ended(grace_seconds, at_once)
        self._closing = True
        for task in self._loop_tasks:
            task.cancel()
        await self._held.stop()
        await asyncio.gather(*self._loop_tasks, return_exceptions=True)
        self._loops.clear()
        self._loop_tasks.clear()

    @property
    def memory(self) -> Memory:
        """Conversation threads and entities, written at once (`flowstore.runtime.memory`)."""
        return Memory(self.store, self._memory_config)

    # ------------------------------------------------------------------ running

    async def run(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        observe: Observer | None = None,
        queue: str | None = None,
        queue_key: str | None = None,
    ) -> Run:
        """Execute a run of `workflow` here, durably, and return it once it has ended.

        `observe` is told of every batch of transitions once it is committed. A run in a
        queue (`queue`, or the workflow's `config.queue`) is submitted to it, and executed
        here once its queue has room for it (or by a worker that takes it first).

        When the store is unavailable under the run (a lock held elsewhere, a dropped
        connection, a server restarting), the run is released and taken up again here from
        what it committed, for up to `store_retry_seconds`; a worker that takes it meanwhile
        finishes it, and this waits for that.

        Raises:
            InvalidValue: The inputs do not match the workflow's declared inputs.
            LeaseLost: Another worker took the run over (this one was stalled past its lease).
            StoreUnavailable: The store stayed unavailable past `store_retry_seconds`.
            QueueNotFound: No queue of that name is stored.
        """
        graph, checked = self._checked(workflow, inputs)
        queue, queue_key = queue_of(graph.spec.config, checked, queue=queue, queue_key=queue_key)
        if queue is not None:  # its turn comes through a claim, as for any worker
            new = self._new_run(
                graph,
                checked,
                id=RunId(run_id) if run_id else None,
                queue=queue,
                queue_key=queue_key,
            )
            record = await submit_run(self.store, new)
            take = functools.partial(self._take, record.id)
            return await self._drive(record.id, graph, checked, observe, None, take)
        new = self._new_run(graph, checked, id=RunId(run_id) if run_id else None, owned=True)
        new = self.store.plan_run(new)
        assert new.id is not None
        return await self._drive(new.id, graph, checked, observe, new, lambda: self._again(new))

    def _checked(
        self, workflow: Workflow, inputs: Mapping[str, Any] | None
    ) -> tuple[Graph, dict[str, Any]]:
        """`workflow` compiled (and registered here if it was not) and `inputs` validated."""
        graph = self._definitions.graph_of(workflow)
        given = inputs or {}
        undeclared = sorted(set(graph.inputs) & self._resources.names - set(given))
        if undeclared:
            raise ConfigurationError(
                f"workflow {graph.name!r} takes {', '.join(map(repr, undeclared))} as "
                "workflow inputs, but this engine provides resources of those names: declare "
                f"them with Workflow({graph.name!r}, resources={undeclared!r})"
            )
        return graph, validate_inputs(graph, given)

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
    ) -> NewRun:
        """A run of `graph`, queued, or owned by this engine from the start; its secret fields
        sealed when the engine has a secrets key."""
        if self._sealer is not None:
            fields = (self._secret_fields, graph.spec.config.secret_fields)
            inputs = self._sealer.for_fields(*fields).seal(dict(inputs))
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
            queue=queue,
            queue_key=queue_key,
            lease_seconds=self.lease_seconds,
        )

    def _tracer_for_runs(self) -> Any:
        # Only an application that imported OpenTelemetry can have configured a provider;
        # until one has, the bridge module is not even imported.
        if self._tracer is None and self._telemetry and "opentelemetry" in sys.modules:
            from flowstore.runtime import otel

            self._tracer = otel.default_tracer()
        return self._tracer

    def _hooks_for(self, workflow: str) -> Hooks | None:
        known = self._definitions.by_name.get(workflow)
        hooks = Hooks.merged([self.hooks] + ([known.hooks] if known is not None else []))
        return hooks or None

    async def _execute(
        self,
        run: Claim | NewRun,
        graph: Graph,
        inputs: Mapping[str, Any] | None,
        observe: Observer | None,
    ) -> RunId:
        """Execute a claimed run here; or create a run owned by this engine (a `NewRun`) and
        execute it, stored with its first commit (its first nodes' start) in one transaction.
        Held for as long as it executes, and ended or released however that ends
        (`ownership.hold_run`); its stored inputs are validated there unless `inputs` are
        given. Returns the run's id."""
        create = None
        if isinstance(run, NewRun):
            create = self.store.plan_run(run)
            record = create.record()
            run = Claim(record, self.worker_id, record.fencing, record.lease_expires_at)
        claim = run
        redactor = Redactor.of(self._secret_fields, graph.spec.config.secret_fields)

        async def execute(held: HeldRun) -> RunStatus:
            checked = inputs
            if checked is None:
                checked = validate_inputs(graph, self._opened(claim.run.inputs))
            with self._live.executing(claim.run.id) as live:
                return await execute_run(
                    self.store,
                    claim,
                    graph,
                    checked,
                    observe=observe,
                    cancelled=held.cancelled,
                    lost=held.lost,
                    run_child=functools.partial(run_child, self),
                    children=EngineChildren(self),
                    telemetry=self._telemetry,
                    hooks=self._hooks_for(graph.name),
                    debug=self._debug,
                    resources=self.resources,
                    tracer=self._tracer_for_runs(),
                    secret_fields=self._secret_fields,
                    live=live,
                    create=create,
                    sealer=self._sealer,
                    redactor=redactor,
                )

        try:
            # Its secrets out of every line logged about it, to the end of its scope.
            with redacting(redactor):
                await hold_run(
                    self.store, claim, self._held, execute, closing=lambda: self._closing
                )
        finally:
            self._run_ended(claim.run.id)
        return claim.run.id

    async def _execute_claim(self, claim: Claim) -> None:
        """Execute a run a worker loop claimed (one of a definition registered here)."""
        await self._execute(claim, self._definitions.by_hash[claim.run.graph_hash], None, None)

    def _claimable(self) -> list[str]:
        """The graph hashes of the definitions registered here."""
        return list(self._definitions.by_hash)

    async def _dead_local_workers(self) -> list[WorkerId]:
        return await dead_local_workers(self.store, self.worker_id)

    async def stream(
        self,
        workflow: Workflow,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        observe: Observer | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Execute a run of `workflow` here, as `run` does, yielding its events as they happen
        (tokens included), up to the run's end. Leaving the loop early cancels the run."""
        self._checked(workflow, inputs)  # raised here, not in a task
        run_id = RunId(run_id or str(uuid.uuid4()))
        running = asyncio.ensure_future(self.run(workflow, inputs, run_id=run_id, observe=observe))
        try:
            async for event in follow_run(self.store, self._live, run_id, executing=running):
                yield event
            await running
        finally:
            if not running.done():
                held = self._held.get(run_id)
                if held is not None:  # ends it `cancelled`, durably, through its executor
                    held.cancelled.set()
                else:  # not started yet: cancelled before its first commit
                    running.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await running


async def _cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task of the engine, and wait until it has stopped."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
