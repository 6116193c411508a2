"""Queues: named limits that runs wait their turn under, shared by every worker.

```python
Queue("llm", concurrency=2, per_key=1, rate_limit=10, rate_period=1.0)
```

A run in a queue is claimed only while its queue has room: fewer than `concurrency` of the
queue's runs running, fewer than `per_key` running with the run's key, and, for a run that has
not started yet, fewer than `rate_limit` of the queue's runs started in the last `rate_period`
seconds. A run holds its place while it runs; one that waits (a sleep, a signal) gives it back
and needs a place again to go on. The limits are rows of `flowstore_queues`, checked in the
transaction that claims, so they hold across every worker process and host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowstore.errors import ConfigurationError

__all__ = ["Queue", "QueueState"]

_NAME = re.compile(r"^[A-Za-z_][\w.-]*$")


@dataclass(frozen=True, slots=True)
class Queue:
    """A named queue and its limits (None: no limit of that kind).

    Attributes:
        name: Letters, digits, `_`, `.` and `-`, up to 200 characters.
        concurrency: The most of its runs running at once, across every worker.
        per_key: The most of its runs with one key (`submit(..., queue_key=...)`) running at
            once: `per_key=1` runs one at a time per customer, say.
        rate_limit: The most of its runs started in any `rate_period` seconds.
        rate_period: The window of the rate limit, in seconds.

    Raises:
        ConfigurationError: A name or a limit that is not one (the message says which).
    """

    name: str
    concurrency: int | None = None
    per_key: int | None = None
    rate_limit: int | None = None
    rate_period: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or len(self.name) > 200:
            raise ConfigurationError(
                f"queue name {self.name!r}: use letters, digits, '_', '.' and '-', starting "
                "with a letter or '_', up to 200 characters"
            )
        for field in ("concurrency", "per_key", "rate_limit"):
            value = getattr(self, field)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ConfigurationError(
                    f"queue {self.name!r}: {field} must be a whole number of at least 1, or "
                    f"None for no limit; it is {value!r}"
                )
        period = self.rate_period
        if isinstance(period, bool) or not isinstance(period, int | float) or not period > 0:
            raise ConfigurationError(
                f"queue {self.name!r}: rate_period must be a number of seconds above 0; it is "
                f"{period!r}"
            )

    @property
    def limited(self) -> bool:
        """Whether any limit holds its runs back."""
        return any(limit is not None for limit in (self.concurrency, self.per_key, self.rate_limit))

    def row(self) -> dict[str, Any]:
        """Its columns in `flowstore_queues` (no period stored without a rate limit)."""
        return {
            "name": self.name,
            "concurrency": self.concurrency,
            "per_key": self.per_key,
            "rate_limit": self.rate_limit,
            "rate_period": None if self.rate_limit is None else float(self.rate_period),
        }

    @classmethod
    def from_row(cls, row: Any) -> Queue:
        """Build it from a row of `flowstore_queues`."""
        return cls(
            name=row.name,
            concurrency=row.concurrency,
            per_key=row.per_key,
            rate_limit=row.rate_limit,
            rate_period=row.rate_period if row.rate_period is not None else 1.0,
        )

    def describe(self) -> str:
        """Its limits in words: `concurrency 2, per key 1, 10 starts per 1 s`."""
        limits = []
        if self.concurrency is not None:
            limits.append(f"concurrency {self.concurrency}")
        if self.per_key is not None:
            limits.append(f"per key {self.per_key}")
        if self.rate_limit is not None:
            limits.append(f"{self.rate_limit} starts per {self.rate_period:g} s")
        return ", ".join(limits) or "no limits"


@dataclass(frozen=True, slots=True)
class QueueState:
    """A queue now: its limits, and its runs that have not ended.

    Attributes:
        queue: The queue and its limits.
        queued: Runs waiting for their turn (never started).
        running: Runs holding a place.
        waiting: Runs waiting for a sleep or a signal (holding no place).
        oldest_queued_at: When the queued run that has waited longest was submitted.
        started_recently: Runs started within the last `rate_period` (with a rate limit).
    """

    queue: Queue
    queued: int
    running: int
    waiting: int
    oldest_queued_at: datetime | None
    started_recently: int | None
