"""The resilience policies on their own: which errors are retried, delays, deadlines."""

from __future__ import annotations

import asyncio
import random

import pytest

from flowstore.definition.spec import Retry
from flowstore.errors import ConfigurationError, ExecutionError, InvalidValue, NodeTimeout
from flowstore.runtime.policies import retry_delay, retryable, with_retry, with_timeout


class FlakyError(ConnectionError):
    pass


class Journal:
    def __init__(self) -> None:
        self.entries: list[tuple[str, int]] = []

    async def retrying(self, error: Exception, attempt: int, delay: float) -> None:
        self.entries.append((f"retrying after {type(error).__name__}", attempt))

    async def attempt_starts(self, attempt: int) -> None:
        self.entries.append(("starts", attempt))


def test_every_exception_is_retryable_unless_retry_on_names_some() -> None:
    assert retryable(Retry(), ValueError("x"))
    assert not retryable(Retry(), KeyboardInterrupt())
    named = Retry(retry_on=("TimeoutError", "builtins.ConnectionError"))
    assert retryable(named, NodeTimeout("slow"))  # a TimeoutError by inheritance
    assert retryable(named, FlakyError())  # a ConnectionError, named with its module
    assert retryable(Retry(retry_on=(f"{__name__}.FlakyError",)), FlakyError())
    assert not retryable(named, ValueError("x"))


def test_mistakes_are_retried_only_when_named() -> None:
    assert not retryable(Retry(), ConfigurationError("no resource 'http'"))
    assert not retryable(Retry(), InvalidValue("output: not an int"))
    assert retryable(Retry(retry_on=["InvalidValue"]), InvalidValue("output: not an int"))


def test_delays_grow_exponentially_up_to_the_maximum_and_jitter_stays_below() -> None:
    policy = Retry(backoff=0.5, multiplier=3, max_delay=10, jitter=False)
    assert [retry_delay(policy, n) for n in (1, 2, 3, 4)] == [0.5, 1.5, 4.5, 10]
    jittered = Retry(backoff=0.5, multiplier=3, max_delay=10)
    rng = random.Random(7)
    delays = [retry_delay(jittered, 3, rng=rng) for _ in range(200)]
    assert all(0 <= delay <= 4.5 for delay in delays)
    assert len(set(delays)) > 150, "jitter should spread the delays"


async def test_retries_until_success_and_records_each_retry_first() -> None:
    journal = Journal()
    calls: list[int] = []

    async def call(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 3:
            raise FlakyError("down")
        return "ok"

    policy = Retry(attempts=5, backoff=0.001, jitter=False)
    assert await with_retry(policy, 1, call, journal) == "ok"
    assert calls == [1, 2, 3]
    assert journal.entries == [
        ("retrying after FlakyError", 1),
        ("starts", 2),
        ("retrying after FlakyError", 2),
        ("starts", 3),
    ]


async def test_gives_up_after_the_last_attempt_or_on_an_error_not_retried() -> None:
    async def fail(attempt: int) -> str:
        raise FlakyError(f"attempt {attempt}")

    with pytest.raises(FlakyError, match="attempt 2"):
        await with_retry(Retry(attempts=2, backoff=0), 1, fail, Journal())
    only_timeouts = Retry(attempts=5, backoff=0, retry_on=("TimeoutError",))
    journal = Journal()
    with pytest.raises(FlakyError, match="attempt 1"):
        await with_retry(only_timeouts, 1, fail, journal)
    assert journal.entries == []
    # A node recovered past its last attempt runs once more, and is not retried.
    with pytest.raises(FlakyError, match="attempt 4"):
        await with_retry(Retry(attempts=3, backoff=0), 4, fail, Journal())


async def test_a_timeout_cancels_the_call_and_names_the_node() -> None:
    cancelled = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(NodeTimeout, match=r"node .fetch. took longer than its timeout of 0\.05 s"):
        await with_timeout(0.05, slow, node="fetch")
    assert cancelled.is_set()
    assert issubclass(NodeTimeout, TimeoutError) and issubclass(NodeTimeout, ExecutionError)


async def test_a_nodes_own_timeout_error_is_not_taken_for_the_deadline() -> None:
    async def client_times_out() -> None:
        raise TimeoutError("the HTTP client gave up")

    with pytest.raises(TimeoutError, match="HTTP client") as caught:
        await with_timeout(5, client_times_out, node="fetch")
    assert not isinstance(caught.value, NodeTimeout)
    assert await with_timeout(None, lambda: asyncio.sleep(0, "done"), node="fetch") == "done"
