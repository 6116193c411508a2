"""Queueing runs: by definition or by workflow name, idempotent on a caller-chosen run id.

Shared by `Engine.submit` and `Client.submit`: a process that only submits runs needs no
workflow code, only the definitions the workers stored (`Store.register_graphs`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from flowstore.errors import ExecutionError, IntegrityConflict, InvalidValue, RunNotFound
from flowstore.store.protocol import Store
from flowstore.store.records import NewRun, RunRecord, StoredGraph

__all__ = ["LIVE_SECONDS", "checked_signal", "choose_graph", "live_definitions", "submit_run"]

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
