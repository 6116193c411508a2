"""Circuit breaker: after repeated failures of a named dependency, stop calling it for a while.

The state (closed, open, half-open; failure count; opened at) lives in the store, shared by
every node that names the dependency, every worker and every restart. Saves are
compare-and-set on a version, so two workers that change the same breaker at once cannot
overwrite each other: the loser reads again and decides anew.

- closed: calls go through; a failure adds to the count, and `failure_threshold` consecutive
  failures open the breaker. A success resets the count.
- open: calls fail at once with `CircuitOpen`, until `reset_after` seconds have passed since it
  opened; then it turns half-open.
- half-open: calls go through as trials; a success closes the breaker, a failure opens it
  again.

An error the caller names in `ignore` (the dependency answered, and refused the request)
counts neither way: it is raised as it is, and the state is left as it was.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from flowstore.definition.spec import Breaker
from flowstore.errors import CircuitOpen
from flowstore.store.protocol import Store
from flowstore.store.records import BreakerState

__all__ = ["BreakerMoved", "with_breaker"]

T = TypeVar("T")
BreakerMoved = Callable[[str, str, str], Awaitable[None]]
"""Told of each change of a breaker's state: `(name, from_state, to_state)`."""

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
_RACES = 20  # compare-and-set attempts before giving up on a hot breaker


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def with_breaker(
    policy: Breaker | None,
    store: Store,
    call: Callable[[], Awaitable[T]],
    *,
    moved: BreakerMoved,
    ignore: tuple[type[Exception], ...] = (),
    now: Callable[[], datetime] = _utcnow,
) -> T:
    """Await `call()` if the breaker lets it through, and record how it went (an error of a
    type in `ignore` is not recorded).

    Raises:
        CircuitOpen: The breaker is open; `call` was not made.
    """
    if policy is None:
        return await call()
    await _admit(policy, store, moved, now)
    try:
        result = await call()
    except ignore:
        raise
    except Exception:
        await _record(policy, store, moved, now, failed=True)
        raise
    await _record(policy, store, moved, now, failed=False)
    return result


async def _admit(
    policy: Breaker, store: Store, moved: BreakerMoved, now: Callable[[], datetime]
) -> None:
    for _ in range(_RACES):
        state = await store.get_breaker(policy.name)
        if state is None or state.state != OPEN:
            return
        assert state.opened_at is not None
        trial_at = state.opened_at + timedelta(seconds=policy.reset_after)
        if now() < trial_at:
            raise CircuitOpen(
                f"circuit breaker {policy.name!r} is open after {state.failure_count} failures; "
                f"it lets a trial call through from {trial_at.isoformat(timespec='seconds')}"
            )
        if await _save(store, state, HALF_OPEN, state.failure_count, state.opened_at, moved):
            return
    raise CircuitOpen(f"circuit breaker {policy.name!r} changed too often to decide")


async def _record(
    policy: Breaker,
    store: Store,
    moved: BreakerMoved,
    now: Callable[[], datetime],
    *,
    failed: bool,
) -> None:
    for _ in range(_RACES):
        state = await store.get_breaker(policy.name)
        current = CLOSED if state is None else state.state
        failures = 0 if state is None else state.failure_count
        if not failed:
            if current == CLOSED and failures == 0:
                return  # nothing to change: no write on the common path
            target, failures, opened_at = CLOSED, 0, None
        else:
            failures += 1
            opens = current == HALF_OPEN or failures >= policy.failure_threshold
            target = OPEN if opens or current == OPEN else CLOSED
            opened_at = (
                now()
                if target == OPEN and current != OPEN
                else (state.opened_at if state else None)
            )
        if await _save(store, state, target, failures, opened_at, moved, name=policy.name):
            return


async def _save(
    store: Store,
    state: BreakerState | None,
    target: str,
    failures: int,
    opened_at: datetime | None,
    moved: BreakerMoved,
    *,
    name: str | None = None,
) -> bool:
    """Compare-and-set; False when another worker saved first."""
    name = name or (state.name if state else "")
    saved = await store.save_breaker(
        name,
        state=target,
        failure_count=failures,
        success_count=(state.success_count if state else 0) + (target == CLOSED and not failures),
        opened_at=opened_at,
        expected_version=state.version if state else 0,
    )
    if saved is None:
        return False
    before = CLOSED if state is None else state.state
    if before != target:
        await moved(name, before, target)
    return True
