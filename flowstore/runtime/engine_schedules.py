"""The part of `Engine` that looks after schedules: the loop that starts their ticks, and
the runs it starts (mixed into `Engine`; the schedules themselves are `runtime/schedules.py`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flowstore.definition.builder import Workflow
from flowstore.definition.spec import ExecutionConfig
from flowstore.runtime.definitions import Definitions
from flowstore.runtime.schedules import ScheduleControl, ScheduleLoop, tick_run_id
from flowstore.runtime.submission import queue_of
from flowstore.store.records import NewRun
from flowstore.store.schedule_records import Schedule

if TYPE_CHECKING:
    from flowstore.definition.graph import Graph
    from flowstore.runtime.sealing import Sealer
    from flowstore.store.protocol import Store

__all__ = ["EngineSchedules"]


class EngineSchedules(ScheduleControl):
    """`Engine.schedule` and the rest of `ScheduleControl`, and the engine's schedule loop."""

    _definitions: Definitions
    _sealer: Sealer | None
    _secret_fields: tuple[str, ...]
    _poll_seconds: float
    _ticking: ScheduleLoop | None
    _ticking_task: asyncio.Task[None] | None

    if TYPE_CHECKING:  # provided by `Engine`

        def _checked(
            self, workflow: Workflow, inputs: Mapping[str, Any] | None
        ) -> tuple[Graph, dict[str, Any]]: ...

    def _start_ticking(self, store: Store, started: Callable[[], None]) -> None:
        """Start the loop that starts the ticks of the schedules of the workflows registered
        here (`started` is told when it created runs)."""
        self._ticking = ScheduleLoop(
            store,
            lambda: list(self._definitions.by_name),
            self._tick_run,
            started=started,
            poll_seconds=self._poll_seconds,
        )
        self._ticking_task = asyncio.create_task(self._ticking.run_forever())

    async def _stop_ticking(self) -> None:
        task, self._ticking, self._ticking_task = self._ticking_task, None, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _scheduled(self) -> None:
        if self._ticking is not None:
            self._ticking.wake()

    async def _schedule_inputs(
        self, workflow: Workflow | str, inputs: Mapping[str, Any]
    ) -> tuple[str, ExecutionConfig, dict[str, Any]]:
        if isinstance(workflow, str):
            self._definitions.named(workflow)  # raises for a workflow not registered here
            workflow = self._definitions.by_name[workflow]
        graph, checked = self._checked(workflow, inputs)
        if self._sealer is not None:
            fields = (self._secret_fields, graph.spec.config.secret_fields)
            checked = self._sealer.for_fields(*fields).seal(dict(checked))
        return graph.name, graph.spec.config, checked

    def _tick_run(self, schedule: Schedule, at: datetime) -> NewRun:
        """The run of a schedule's tick: of the definition of its workflow registered last
        here, with the schedule's inputs (checked, and sealed, when it was stored)."""
        graph = self._definitions.named(schedule.workflow)
        queue, queue_key = queue_of(
            graph.spec.config, schedule.inputs, queue=schedule.queue, queue_key=schedule.queue_key
        )
        return NewRun(
            workflow=graph.name,
            version=graph.spec.version,
            graph_hash=graph.hash,
            inputs=schedule.inputs,
            spec=graph.stored_spec(),
            id=tick_run_id(schedule, at),
            priority=schedule.priority,
            queue=queue,
            queue_key=queue_key,
        )
