"""Every exception flowstore raises, under one root.

```
FlowstoreError
├── DefinitionError               a workflow definition is invalid: every problem, with where
├── ExecutionError                a run could not go on
│   ├── ConfigurationError        a node is wired or set up wrong: never retried or fallen back
│   ├── ExpressionError           a condition failed on a run's values
│   ├── InvalidValue              an input or output does not match its declared type
│   ├── NodeTimeout               a node call took longer than its timeout (also a TimeoutError)
│   ├── RunTimeout                a run took longer than its run_timeout (also a TimeoutError)
│   ├── CircuitOpen               a circuit breaker is open: the dependency was not called
│   ├── LlmCallFailed             a model endpoint failed a call: worth trying again
│   ├── LlmRequestRejected        a model endpoint refused a request (also a ConfigurationError)
│   ├── LlmOutputInvalid          a model's reply did not match its schema (also an InvalidValue)
│   └── StreamInterrupted         a reader was shown events that its run's owner never committed
└── StoreError                    the SQL store refused or failed an operation
    ├── StoreUnavailable          the database could not be reached or stayed locked
    ├── DatabaseGone              the SQLite file was deleted or replaced under an open store
    ├── SchemaError               the database schema is missing or not at the expected revision
    ├── IntegrityConflict         a write broke a uniqueness or foreign-key rule
    ├── RunNotFound               no run has the given id
    ├── RunEnded                  the run has ended: it takes no more signals
    ├── LeaseLost                 the caller's fencing number is stale: another worker owns the run
    └── StoredValueError          a value could not be stored
        ├── UnserializableValue   a value has a type that has no JSON form
        └── ValueTooLarge         a value's JSON is over the configured size limit
```

A class's docstring is its default message. Driver exceptions never leave `flowstore.store`:
they are translated into this tree, with the original kept as `__cause__`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "CircuitOpen",
    "ConfigurationError",
    "DatabaseGone",
    "DefinitionError",
    "ExecutionError",
    "ExpressionError",
    "FlowstoreError",
    "IntegrityConflict",
    "InvalidValue",
    "LargeValueWarning",
    "LeaseLost",
    "LlmCallFailed",
    "LlmOutputInvalid",
    "LlmRequestRejected",
    "NodeTimeout",
    "Problem",
    "QueueNotFound",
    "RunEnded",
    "RunNotFound",
    "RunTimeout",
    "ScheduleNotFound",
    "SchemaError",
    "StoreError",
    "StoreUnavailable",
    "StreamInterrupted",
    "StoredValueError",
    "UnserializableValue",
    "ValueTooLarge",
]


class FlowstoreError(Exception):
    """A flowstore operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (type(self).__doc__ or type(self).__name__).strip())

    @property
    def message(self) -> str:
        """The human-readable message."""
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a workflow definition, and where it is.

    Attributes:
        message: What is wrong.
        workflow: The workflow's name, when known.
        node: The node, when the problem is in one.
        field: The field of the node (or of the workflow) that is wrong, such as `when`.
        file: The definition file, for a DSL definition.
        line: The 1-based line in that file.
        column: The 1-based column in that line.
    """

    message: str
    workflow: str | None = None
    node: str | None = None
    field: str | None = None
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            position = "".join(f":{n}" for n in (self.line, self.column) if n is not None)
            where.append(f"{self.file}{position}")
        if self.workflow is not None:
            where.append(f"workflow {self.workflow!r}")
        if self.node is not None:
            where.append(f"node {self.node!r}")
        if self.field is not None:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class DefinitionError(FlowstoreError):
    """The workflow definition is invalid."""

    def __init__(self, problems: Iterable[Problem] | str | None = None) -> None:
        if problems is None or isinstance(problems, str):
            problems = [Problem(problems or (type(self).__doc__ or "").strip())]
        self.problems: tuple[Problem, ...] = tuple(problems)
        if len(self.problems) == 1:
            super().__init__(str(self.problems[0]))
        else:
            listed = "\n".join(f"  - {problem}" for problem in self.problems)
            super().__init__(f"{len(self.problems)} problems in the definition:\n{listed}")


class ExecutionError(FlowstoreError):
    """A run could not go on."""


class ConfigurationError(ExecutionError):
    """A node is wired or set up wrong (a resource missing from the engine, say): the node
    fails at once, without retries or its fallback, unless its policy names this error."""


class ExpressionError(ExecutionError):
    """A condition could not be evaluated on the run's values."""


class InvalidValue(ExecutionError):
    """A workflow input, or a node's input or output, does not match its declared type.

    A node whose input or output is invalid fails at once, without retries or its fallback,
    unless its policy names this error: a value of the wrong type is a bug to see, not a
    passing fault to hide."""


class NodeTimeout(ExecutionError, TimeoutError):
    """A node call took longer than its timeout and was cancelled."""


class RunTimeout(ExecutionError, TimeoutError):
    """A run took longer than its `run_timeout`: its running nodes were cancelled."""


class CircuitOpen(ExecutionError):
    """A circuit breaker is open: the dependency behind it was not called."""


class LlmCallFailed(ExecutionError):
    """A call to a model endpoint failed (no connection, a timeout, HTTP 429 or 5xx, a stream
    cut or garbled): retried by the node's policy, no sooner than `retry_after` seconds when
    the endpoint asked for that."""

    def __init__(
        self,
        message: str | None = None,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class LlmRequestRejected(ConfigurationError):
    """A model endpoint refused the request (HTTP 4xx: a wrong key, model or parameter): the
    same request would be refused again, so it is not retried."""

    def __init__(self, message: str | None = None, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LlmOutputInvalid(InvalidValue):
    """A model's reply did not match the node's output schema, after the repairs allowed."""


class StreamInterrupted(ExecutionError):
    """A reader was shown events live that the run's owner never committed: it lost the run.

    Those events may be replaced by the next owner's. Read again with
    `Engine.events(run_id, after=resume_after)`.
    """

    def __init__(self, message: str | None = None, resume_after: int = 0) -> None:
        super().__init__(message)
        self.resume_after = resume_after


class StoreError(FlowstoreError):
    """The store failed an operation."""


class StoreUnavailable(StoreError):
    """The database could not be reached, or stayed locked past the busy timeout."""


class DatabaseGone(StoreError):
    """The SQLite database file was deleted or replaced while the store had it open: nothing
    more is written to it."""


class SchemaError(StoreError):
    """The database schema is not at the revision this version of flowstore needs."""


class IntegrityConflict(StoreError):
    """A write broke a uniqueness or foreign-key rule of the store."""


class RunNotFound(StoreError):
    """No run has this id."""


class QueueNotFound(StoreError):
    """No queue has this name."""


class ScheduleNotFound(StoreError):
    """No schedule has this name."""


class RunEnded(StoreError):
    """The run has ended: it takes no more signals."""


class LeaseLost(StoreError):
    """The run is owned by another worker now; this worker's writes are rejected."""


class StoredValueError(StoreError):
    """A value could not be stored."""


class UnserializableValue(StoredValueError):
    """A value has no JSON form."""


class ValueTooLarge(StoredValueError):
    """A value's JSON form is larger than the configured limit."""


class LargeValueWarning(UserWarning):
    """A stored value is larger than the warning threshold; it was stored."""
