"""Queueing runs: by definition or by workflow name, idempotent on a caller-chosen run id.

Shared by `Engine.submit` and `Client.submit`: a process that only submits runs needs no
workflow code, only the definitions the workers stored (`Store.register_graphs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from flowstore.definition.spec import ExecutionConfig
from flowstore.errors import (
    ConfigurationError,
    ExecutionError,
    IntegrityConflict,
    InvalidValue,
    RunNotFound,
)
from flowstore.store.protocol import Store
from flowstore.store.records import NewRun, RunRecord, StoredGraph

__all__ = [
    "LIVE_SECONDS",
    "checked_signal",
    "choose_graph",
    "live_definitions",
    "queue_of",
    "submit_run",
]

LIVE_SECONDS: Final = 90.0
"""A worker whose last heartbeat is older than this is taken for gone."""


async def submit_run(store: Store, new: NewRun) -> RunRecord:
    """Create a queued run. With a caller-chosen id, submitting again is harmless: a run that
    has that id already is returned as it is (when it is of the same workflow).

    Raises:
        IntegrityConflict: The id is taken by a run of another workflow.
    """
    try:
        return await store.create_run(new)
    except IntegrityConflict:
        if new.id is None:
            raise
        try:
            existing = await store.get_run(new.id)
        except RunNotFound:
            raise
        if existing.workflow != new.workflow:
            raise IntegrityConflict(
                f"run id {new.id!r} is taken by a run of workflow {existing.workflow!r}, not "
                f"{new.workflow!r}"
            ) from None
        return existing


async def live_definitions(store: Store) -> set[str]:
    """The graph hashes some live worker claims runs of."""
    since = datetime.now(UTC) - timedelta(seconds=LIVE_SECONDS)
    return {
        graph_hash
        for worker in await store.list_workers(heartbeat_since=since)
        for graph_hash in (worker.metadata or {}).get("graphs", ())
    }


async def choose_graph(store: Store, workflow: str, version: str | None = None) -> StoredGraph:
    """The definition a run of `workflow` submitted by name executes: of the stored ones
    (of `version`, when given), the newest a live worker claims runs of; else the newest.

    Raises:
        ExecutionError: No definition of the workflow (or of that version) is stored.
    """
    stored = await store.list_graphs(workflow)
    if version is not None:
        stored = [graph for graph in stored if graph.version == version]
    if not stored:
        which = f"workflow {workflow!r}" + (f" version {version!r}" if version else "")
        raise ExecutionError(
            f"no definition of {which} is stored: a worker stores the definitions it runs when "
            "it starts (`flowstore worker --workflows module:flow`, or an Engine with the "
            "workflow)"
        )
    live = await live_definitions(store)
    return next((graph for graph in stored if graph.hash in live), stored[0])


def queue_of(
    config: ExecutionConfig,
    inputs: Mapping[str, Any],
    *,
    queue: str | None,
    queue_key: str | None,
) -> tuple[str | None, str | None]:
    """The queue a submitted run waits in, and its key there: those of the submission, else
    the workflow's (`config.queue`, and the value of the input `config.queue_key` names).

    Raises:
        ConfigurationError: A key without a queue.
        InvalidValue: The input that gives the key is not a string or a whole number.
    """
    chosen = queue or config.queue
    if chosen is None:
        if queue_key is not None:
            raise ConfigurationError(
                f"queue_key {queue_key!r} is given without a queue: name the queue too "
                "(queue=...), or the workflow's config.queue"
            )
        return None, None
    if queue_key is None and config.queue_key is not None:
        value = inputs.get(config.queue_key)
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InvalidValue(
                f"input {config.queue_key!r} is the run's key in queue {chosen!r} "
                f"(config.queue_key): it must be a string or a whole number, not {value!r}"
            )
        queue_key = str(value)
    if queue_key is not None and not 0 < len(queue_key) <= 200:
        raise InvalidValue(f"queue key {queue_key[:40]!r}: it must be 1 to 200 characters long")
    return chosen, queue_key


def checked_signal(model: Any, run_id: str, name: str, payload: Any) -> Any:
    """A signal's payload checked by the model its workflow declares for it (as JSON data),
    before anything is stored.

    Raises:
        InvalidValue: The payload does not match: the signal is not sent.
    """
    if model is None:
        return payload
    try:
        checked = TypeAdapter(model).validate_python(payload)
    except ValidationError as error:
        problems = "; ".join(
            ".".join(map(str, detail["loc"])) + ": " + detail["msg"]
            if detail["loc"]
            else detail["msg"]
            for detail in error.errors()
        )
        raise InvalidValue(
            f"signal {name!r} to run {run_id}: the payload is not a "
            f"{getattr(model, '__name__', model)}: {problems}; it was not sent"
        ) from None
    return TypeAdapter(model).dump_python(checked, mode="json")
