"""Every exception flowstore raises, under one root.

```
FlowstoreError
└── StoreError                    the SQL store refused or failed an operation
    ├── StoreUnavailable          the database could not be reached or stayed locked
    ├── SchemaError               the database schema is missing or not at the expected revision
    ├── IntegrityConflict         a write broke a uniqueness or foreign-key rule
    ├── RunNotFound               no run has the given id
    ├── LeaseLost                 the caller's fencing number is stale: another worker owns the run
    └── StoredValueError          a value could not be stored
        ├── UnserializableValue   a value has a type that has no JSON form
        └── ValueTooLarge         a value's JSON is over the configured size limit
```

A class's docstring is its default message. Driver exceptions never leave `flowstore.store`:
they are translated into this tree, with the original kept as `__cause__`.
"""

from __future__ import annotations

__all__ = [
    "FlowstoreError",
    "IntegrityConflict",
    "LargeValueWarning",
    "LeaseLost",
    "RunNotFound",
    "SchemaError",
    "StoreError",
    "StoreUnavailable",
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


class StoreError(FlowstoreError):
    """The store failed an operation."""


class StoreUnavailable(StoreError):
    """The database could not be reached, or stayed locked past the busy timeout."""


class SchemaError(StoreError):
    """The database schema is not at the revision this version of flowstore needs."""


class IntegrityConflict(StoreError):
    """A write broke a uniqueness or foreign-key rule of the store."""


class RunNotFound(StoreError):
    """No run has this id."""


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
