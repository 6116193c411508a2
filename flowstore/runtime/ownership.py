"""Who holds which run: the one place where a run's life in this process begins and ends.

Every run this process executes (one it created, claimed, took over or reopened) is held in
`HeldRuns` for exactly as long as its executor runs, by `hold_run`. The heartbeat renews the
leases of the runs held here and of no others, so a run whose executor stopped is never kept
alive by a live process. On every way out of `hold_run` the run is left in a state another
worker can act on:

- the executor ended it (succeeded, failed, cancelled): nothing more to do;
- its lease was lost (`LeaseLost`): another worker owns it, nothing is written;
- the store was unavailable under it (`StoreUnavailable`: a lock held too long, a dropped
  connection, a server restarting): its lease is released, so it is claimed again at once
  and carries on from what was committed (if even that fails, the lease expires);
- the process is shutting down (`closing`): its lease is released for another worker;
- its caller was cancelled: it ends `cancelled`;
- anything else (a value the store refused, a bug): it ends `failed` with that error, and
  `resume` can take it up again.

An ending written here is fenced like every commit, so it never overwrites another owner's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from flowstore.errors import DatabaseGone, LeaseLost, StoreError, StoreUnavailable
from flowstore.logs import engine_logger
from flowstore.runtime.calls import error_value
from flowstore.store.protocol import WorkerStore
from flowstore.store.records import Claim, RunChange, RunId, RunStatus, WorkerInfo

__all__ = ["HeldRun", "HeldRuns", "heartbeat", "hold_run"]

log = engine_logger("flowstore.worker")

T = TypeVar("T")


@dataclass(eq=False)
class HeldRun:
    """A run this process executes, with its lease.

    Attributes:
        run_id: The run.
        fencing: The fencing number its writes carry.
        expires: Loop time (`loop.time()`) by which the lease must be renewed, or the run
            must stop: after it, another worker may have taken the run over.
        cancelled: Set to cancel the run (a cancel request, a reader that left).
        lost: Set when the lease could not be renewed: the executor stops, writing nothing.
        why_lost: What `lost` means, once set.
        task: The task executing it.
    """

    run_id: RunId
    fencing: int
    expires: float
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    why_lost: str = ""
    task: asyncio.Task[object] | None = None

    def lose(self, why: str) -> None:
        """Stop the run here: its lease is gone (`why`)."""
        if not self.lost.is_set():
            self.why_lost = why
            self.lost.set()


class HeldRuns:
    """The runs this process holds the lease of, by id: the only ones its heartbeat renews."""

    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        self._runs: dict[RunId, HeldRun] = {}

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def __iter__(self) -> Iterator[HeldRun]:
        return iter(tuple(self._runs.values()))

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, run_id: RunId) -> HeldRun | None:
        """The held run, if it is held here."""
        return self._runs.get(run_id)

    @contextlib.contextmanager
    def holding(self, claim: Claim) -> Iterator[HeldRun]:
        """Hold the claimed run for as long as the block runs."""
        loop = asyncio.get_running_loop()
        held = HeldRun(
            claim.run.id,
            claim.fencing,
            expires=loop.time() + self.lease_seconds,
            task=asyncio.current_task(),
        )
        self._runs[held.run_id] = held
        try:
            yield held
        finally:
            if self._runs.get(held.run_id) is held:
                del self._runs[held.run_id]

    async def ended(self, seconds: float, at_once: asyncio.Event | None = None) -> None:
        """Wait until every held run has ended, `seconds` have passed, or `at_once` is set."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        hurry = asyncio.ensure_future((at_once or asyncio.Event()).wait())
        try:
            while tasks := self._tasks():
                left = deadline - loop.time()
                if left <= 0 or hurry.done():
                    return
                await asyncio.wait({*tasks, hurry}, timeout=left, return_when="FIRST_COMPLETED")
        finally:
            hurry.cancel()

    async def stop(self) -> None:
        """Cancel every held run's task, and wait until each run is ended or released."""
        for task in self._tasks():
            task.cancel()
        while tasks := self._tasks():
            await asyncio.wait(tasks)

    def _tasks(self) -> set[asyncio.Task[object]]:
        return {held.task for held in self._runs.values() if held.task is not None}

    def leases(self) -> dict[RunId, int]:
        """Each held run's fencing number, to renew."""
        return {held.run_id: held.fencing for held in self._runs.values()}

    def renewed(self, asked: Mapping[RunId, int], renewed: frozenset[RunId], at: float) -> None:
        """A heartbeat sent at loop time `at` renewed `renewed` of the leases `asked`: those
        have until `at + lease_seconds`; the others are lost."""
        for run_id, fencing in asked.items():
            held = self._runs.get(run_id)
            if held is None or held.fencing != fencing:
                continue  # ended, or held anew, since the heartbeat was sent
            if run_id in renewed:
                held.expires = at + self.lease_seconds
            else:
                held.lose("another worker took it over, or it was ended elsewhere")

    def expire(self, now: float) -> None:
        """Stop the runs whose lease ran out before it could be renewed."""
        for held in self._runs.values():
            if now >= held.expires:
                held.lose("its lease expired before the heartbeat could renew it")


async def hold_run(
    store: WorkerStore,
    claim: Claim,
    held_runs: HeldRuns,
    execute: Callable[[HeldRun], Awaitable[T]],
    *,
    closing: Callable[[], bool],
) -> T:
    """Execute a claimed run (`execute`) while holding it, and leave it ended or released
    however the execution ends (see the module's docstring). `closing` tells whether the
    process is shutting down."""
    with held_runs.holding(claim) as held:
        try:
            return await execute(held)
        except LeaseLost as error:  # another worker owns it, or may: write nothing
            log.warning(
                "worker %s gave up run %s: %s", claim.owner, claim.run.id, held.why_lost or error
            )
            raise
        except BaseException as error:
            # Shielded: a second cancellation must not stop the run's ending half-way.
            await _shielded(_leave(store, claim, error, closing()))
            raise


async def _shielded(work: Awaitable[None]) -> None:
    task = asyncio.ensure_future(work)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def _leave(store: WorkerStore, claim: Claim, error: BaseException, closing: bool) -> None:
    """End or release a run whose executor stopped with `error`."""
    run_id = claim.run.id
    if isinstance(error, DatabaseGone):
        return  # nowhere to write to: its lease runs out wherever the runs are stored
    if closing or isinstance(error, StoreUnavailable):
        if await _release(store, claim):
            reason = "shutting down" if closing else f"the store failed: {error}"
            log.warning("run %s released for another worker (%s)", run_id, reason)
        return
    if isinstance(error, asyncio.CancelledError):
        ending = RunChange(RunStatus.CANCELLED)
    else:
        log.error("run %s failed: %s: %s", run_id, type(error).__name__, error)
        ending = RunChange(RunStatus.FAILED, error=error_value(None, error))
    try:
        await store.end_run(run_id, claim.fencing, ending)
    except StoreError as failure:
        log.warning("run %s: recording its end failed (%s); releasing it", run_id, failure)
        await _release(store, claim)


async def _release(store: WorkerStore, claim: Claim) -> bool:
    """Release the run's lease; on failure, leave it to expire (the heartbeat no longer
    renews it)."""
    try:
        return await store.release_lease(claim.run.id, claim.owner, claim.fencing)
    except StoreError as error:
        log.warning(
            "run %s: releasing its lease failed (%s); it is free once the lease expires",
            claim.run.id,
            error,
        )
        return False


async def heartbeat(
    store: WorkerStore,
    worker: WorkerInfo,
    held_runs: HeldRuns,
    *,
    poll_seconds: float = 0.5,
) -> None:
    """Heartbeat three times per lease, renewing the leases of the runs held here; stop a run
    whose lease was lost or ran out; look for cancel requests of held runs every
    `poll_seconds`. A failure is logged once, retried, and its end logged once."""
    loop = asyncio.get_running_loop()
    period = held_runs.lease_seconds / 3
    next_beat = loop.time() + period
    failures = 0
    while True:
        await asyncio.sleep(min(poll_seconds, period))
        try:
            if loop.time() >= next_beat:
                sent, asked = loop.time(), held_runs.leases()
                # A heartbeat that hangs is a failed one: the leases must not run out unseen.
                renewed = await asyncio.wait_for(
                    store.heartbeat(
                        worker,
                        leases=asked,
                        lease_seconds=held_runs.lease_seconds,
                        forget_after=max(3600.0, 100 * held_runs.lease_seconds),
                    ),
                    timeout=period,
                )
                held_runs.renewed(asked, renewed, sent)
                next_beat = sent + period
            if len(held_runs):
                for run_id in await store.cancel_requests(worker.id):
                    held = held_runs.get(run_id)
                    if held is not None:
                        held.cancelled.set()
        except Exception as error:  # never let the heartbeat die: runs depend on it
            failures += 1
            if failures == 1:
                why = str(error) or type(error).__name__
                log.warning("worker %s: heartbeat failed, retrying: %s", worker.id, why)
            next_beat = min(next_beat, loop.time() + min(poll_seconds, period))
        else:
            if failures:
                log.warning("worker %s: heartbeat back after %d failures", worker.id, failures)
            failures = 0
        held_runs.expire(loop.time())
