"""Hooks of one run: told of its committed changes, failures reported (see `flowstore.hooks`)."""

from __future__ import annotations

import asyncio
import inspect
import traceback
from collections.abc import Sequence
from typing import Any

from flowstore.hooks import Hook, HookEvent, HookKind, Hooks
from flowstore.logs import engine_logger
from flowstore.runtime.redaction import Redactor
from flowstore.store import serde
from flowstore.store.protocol import TelemetryStore
from flowstore.store.records import (
    UNSET,
    Change,
    ErrorChange,
    ErrorReport,
    EventChange,
    NodeChange,
    NodeStatus,
    RunChange,
    RunId,
)

__all__ = ["RunHooks"]

_NODE_ENDS = frozenset({NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.CANCELLED})

log = engine_logger("flowstore.hooks")


class RunHooks:
    """Tells one run's hooks of its committed changes; `drain` waits for async hooks."""

    def __init__(
        self,
        hooks: Hooks,
        store: TelemetryStore,
        run_id: RunId,
        workflow: str,
        redactor: Redactor | None = None,
    ) -> None:
        self._hooks = hooks
        self._redactor = redactor
        self._store = store
        self._run_id = run_id
        self._workflow = workflow
        self._pending: set[asyncio.Task[None]] = set()
        self._started = False

    def observe(self, changes: Sequence[Change]) -> None:
        """A batch of the run's changes was committed; the first one tells `run_start` (the
        run is stored and executes here)."""
        if not self._started:
            self._started = True
            self._fire(HookEvent("run_start", self._run_id, self._workflow))
        for change in changes:
            for event in self._events(change):
                self._fire(event)

    async def drain(self) -> None:
        """Wait for every async hook started so far."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def _events(self, change: Change) -> list[HookEvent]:
        run, workflow = self._run_id, self._workflow
        if isinstance(change, NodeChange):
            if change.status is NodeStatus.RUNNING:
                return [
                    HookEvent("node_start", run, workflow, change.node, change.key, change.attempt)
                ]
            if change.status not in _NODE_ENDS:
                return []
            return [
                HookEvent(
                    "node_end",
                    run,
                    workflow,
                    change.node,
                    change.key,
                    status=change.status.value,
                    error=_summary(change.error),
                    output=_value(change.output),
                )
            ]
        if isinstance(change, RunChange):
            if not change.status.is_terminal:
                return []
            return [
                HookEvent(
                    "run_end",
                    run,
                    workflow,
                    status=change.status.value,
                    error=_summary(change.error),
                    output=_value(change.output),
                )
            ]
        if isinstance(change, ErrorChange):
            error = {
                "type": change.error_type,
                "message": change.message,
                "outcome": change.outcome,
            }
            kinds: list[HookKind] = ["node_error"]
            if change.outcome == "retried":
                kinds.append("node_retry")
            return [
                HookEvent(kind, run, workflow, change.node, change.key, change.attempt, error=error)
                for kind in kinds
            ]
        if isinstance(change, EventChange):
            event = HookEvent(
                "event",
                run,
                workflow,
                change.node,
                change.key,
                name=change.name,
                payload=_value(change.payload),
            )
            if change.name == "cache_hit":
                return [HookEvent("cache_hit", run, workflow, change.node, change.key), event]
            return [event]
        return []

    def _fire(self, event: HookEvent) -> None:
        for hook in self._hooks.hooks_for(event.kind):
            if inspect.iscoroutinefunction(hook):
                task = asyncio.ensure_future(self._call_async(hook, event))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)
                continue
            try:
                hook(event)
            except Exception as error:
                self._failed(hook, event, error)

    async def _call_async(self, hook: Hook, event: HookEvent) -> None:
        try:
            await hook(event)  # type: ignore[misc]
        except Exception as error:
            self._failed(hook, event, error)

    def _failed(self, hook: Hook, event: HookEvent, error: Exception) -> None:
        name = getattr(hook, "__qualname__", repr(hook))
        message, trace = str(error), "".join(traceback.format_exception(error))
        if self._redactor is not None:
            message, trace = self._redactor.text(message), self._redactor.text(trace)
        # Logged as redacted as it is stored: not with `exc_info`, which would print it raw.
        log.error(
            "hook %s failed on %s of run %s: %s\n%s", name, event.kind, self._run_id, message, trace
        )
        report = ErrorReport(
            self._run_id,
            event.node,
            f"{type(error).__module__}.{type(error).__qualname__}",
            message,
            traceback=trace,
            key=event.key,
            outcome="hook_failed",
            details={"hook": name, "event": event.kind},
        )
        task = asyncio.ensure_future(self._report(report))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _report(self, report: ErrorReport) -> None:
        try:
            await self._store.record_errors([report])
        except Exception:  # the store failing too must not break the run either
            log.exception("could not report a failed hook of run %s", self._run_id)


def _value(value: Any) -> Any:
    """A change's value as hooks get it: the value, never its stored JSON text."""
    return None if value is UNSET else serde.plain(value)


def _summary(error: Any) -> dict[str, Any] | None:
    error = _value(error)
    if not isinstance(error, dict):
        return None
    return {"type": error.get("type"), "message": error.get("message")}
