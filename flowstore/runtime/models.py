"""`Run`: what users get back from the engine about one execution of a workflow."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from flowstore.errors import ExecutionError, InvalidValue
from flowstore.store.records import RunId, RunRecord, RunStatus

__all__ = ["Run", "RunStatus"]

T = TypeVar("T")


class Run(BaseModel):
    """One execution of a workflow, as stored.

    Attributes:
        id: The run's id.
        workflow: The workflow's name.
        version: The workflow's declared version.
        graph_hash: The hash of the graph the run executes.
        status: Where the run is; it ends `succeeded`, `failed` or `cancelled`.
        inputs: The validated workflow inputs, as stored (JSON).
        output: The output node's output, once the run succeeded.
        error: What failed, once the run failed: `type`, `message` and `node`.
        parent_run_id: The run that started this one as a subworkflow.
        created_at: When the run was created.
        started_at: When a worker first started it.
        finished_at: When it ended.
        updated_at: When it last changed.
        wake_at: While it waits: when its sleep ends or its wait times out (None: it waits
            for a signal only).
        queue: The queue it waits its turn in (`flowstore.Queue`), if any.
        queue_key: Its key in that queue.
    """

    model_config = ConfigDict(frozen=True)

    id: RunId
    workflow: str
    version: str
    graph_hash: str
    status: RunStatus
    inputs: Any
    output: Any = None
    error: Any = None
    parent_run_id: RunId | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    wake_at: datetime | None = None
    queue: str | None = None
    queue_key: str | None = None

    def output_as(self, type_: type[T]) -> T:
        """The run's output as `type_`: a Pydantic model, a dataclass, `list[str]`, ...
        (`run.output` is the stored JSON).

        Raises:
            ExecutionError: The run has not succeeded: it has no output.
            InvalidValue: The output does not match `type_`.
        """
        if self.status is not RunStatus.SUCCEEDED:
            raise ExecutionError(f"run {self.id} has no output: it is {self.status.value}")
        try:
            converted: T = _adapter(type_).validate_python(self.output)
            return converted
        except ValidationError as error:
            shown = type_.__name__ if isinstance(type_, type) else str(type_)
            problems = "; ".join(
                ".".join(map(str, detail["loc"])) + ": " + detail["msg"]
                if detail["loc"]
                else detail["msg"]
                for detail in error.errors()
            )
            raise InvalidValue(
                f"the output of run {self.id} is not a {shown}: {problems}"
            ) from None

    @classmethod
    def from_record(cls, record: RunRecord) -> Run:
        """The public view of a stored run."""
        return cls(
            id=record.id,
            workflow=record.workflow,
            version=record.version,
            graph_hash=record.graph_hash,
            status=record.status,
            inputs=record.inputs,
            output=record.output,
            error=record.error,
            parent_run_id=record.parent_run_id,
            created_at=record.created_at,
            started_at=record.started_at,
            finished_at=record.finished_at,
            updated_at=record.updated_at,
            wake_at=record.wake_at,
            queue=record.queue,
            queue_key=record.queue_key,
        )


def _adapter(type_: Any) -> TypeAdapter[Any]:
    """One adapter per type (built once: it costs far more than a validation)."""
    try:
        return _adapters(type_)
    except TypeError:  # unhashable
        return TypeAdapter(type_)


@functools.lru_cache(maxsize=256)
def _adapters(type_: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_)
