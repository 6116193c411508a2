"""Resilience policies: small wrappers around one node call, composed in a fixed order.

From the outside in, a node execution is:

0. **cache** (`cache.py`): a node with a cache policy first looks up its key (its identity,
   definition and inputs); a hit is its output, with nothing below run. A success (not a
   fallback) is stored for the next runs, workers and restarts.
1. **fallback** (`fallback.py`): when everything below fails for good, the node produces a
   fallback value instead (another node's output, a callable's result, or a static value) and
   succeeds; the failure is reported with the outcome `fell_back`.
2. **retry** (`retry.py`): a failed attempt is tried again after an exponential backoff with
   jitter, while attempts remain and the error is retryable; each retry is reported (outcome
   `retried`) and the next attempt's number is committed before it starts, so the count
   survives a crash.
3. **circuit breaker** (`breaker.py`): an attempt is made only if the breaker of the node's
   named dependency lets it through (else it fails at once with `CircuitOpen`); its success
   or failure, a timeout included, is counted in the breaker's shared state in the store.
4. **timeout** (`timeout.py`): each attempt is cancelled when it takes longer than the node's
   `timeout` (or the workflow's `node_timeout`) and fails with `NodeTimeout`.

A failure that no policy absorbs fails the node and its run (outcome `failed_run`).
"""

from __future__ import annotations

from flowstore.runtime.policies.breaker import BreakerMoved, with_breaker
from flowstore.runtime.policies.fallback import FallbackUsed, fall_back
from flowstore.runtime.policies.retry import Journal, retry_delay, retryable, with_retry
from flowstore.runtime.policies.timeout import with_timeout

__all__ = [
    "BreakerMoved",
    "FallbackUsed",
    "Journal",
    "fall_back",
    "retry_delay",
    "retryable",
    "with_breaker",
    "with_retry",
    "with_timeout",
]
