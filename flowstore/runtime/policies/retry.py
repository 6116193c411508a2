"""Retry: exponential backoff with jitter, only for retryable errors, each retry recorded."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from flowstore.definition.spec import Retry
from flowstore.runtime.policies.matching import covers

__all__ = ["Journal", "retry_delay", "retryable", "with_retry"]

T = TypeVar("T")


class Journal(Protocol):
    """Where a retry is recorded durably, before its effect (the executor's commits)."""

    async def retrying(self, error: Exception, attempt: int, delay: float) -> None:
        """Attempt `attempt` failed with `error`; the next one starts in `delay` seconds."""
        ...

    async def attempt_starts(self, attempt: int) -> None:
        """Attempt `attempt` is about to start."""
        ...


def retryable(policy: Retry, error: BaseException) -> bool:
    """Whether `policy` retries `error`: one named in `retry_on`, or any `Exception` but a
    `ConfigurationError` or an `InvalidValue` when `retry_on` is empty."""
    return covers(policy.retry_on, error)


def retry_delay(policy: Retry, attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): `backoff * multiplier ** (attempt
    - 1)`, at most `max_delay`, spread over [0, delay] when `jitter` is on ("full jitter")."""
    delay = min(policy.max_delay, policy.backoff * policy.multiplier ** (attempt - 1))
    if policy.jitter:
        delay = (rng or random).uniform(0, delay)
    return delay


_LONGEST_ASKED_DELAY = 3600.0


def _asked_delay(error: BaseException) -> float:
    """The delay the failed dependency asked for (an error's `retry_after` seconds, as an
    HTTP 429 or 503 gives it in `Retry-After`), at most an hour; 0 when it asked none."""
    asked = getattr(error, "retry_after", None)
    if not isinstance(asked, int | float) or asked != asked or asked <= 0:
        return 0.0
    return min(float(asked), _LONGEST_ASKED_DELAY)


async def with_retry(
    policy: Retry | None,
    first_attempt: int,
    call: Callable[[int], Awaitable[T]],
    journal: Journal,
) -> T:
    """Call `call(attempt)` from `first_attempt` on, retrying as `policy` says.

    Attempts are numbered across recoveries: a node recovered after a crash during attempt 2
    starts at attempt 3, and it runs at least once even when that is past `policy.attempts`.
    An error with a `retry_after` (seconds, as an HTTP `Retry-After` gives it) is retried no
    sooner than that.
    """
    attempt = first_attempt
    while True:
        try:
            return await call(attempt)
        except Exception as error:
            if policy is None or attempt >= policy.attempts or not retryable(policy, error):
                raise
            delay = max(retry_delay(policy, attempt), _asked_delay(error))
            await journal.retrying(error, attempt, delay)
            await asyncio.sleep(delay)
            attempt += 1
            await journal.attempt_starts(attempt)
