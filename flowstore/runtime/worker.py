"""The claim loop: a worker takes queued runs, and runs whose owner died, and executes them.

Each of an engine's worker tasks loops: claim the next claimable run of a definition it has
(queued; or running with an expired or released lease; or owned by a process on this host
that no longer exists; or waiting and due), execute it, repeat. With nothing to claim, it
sleeps until the next look (backing off to `poll_seconds`), or until the first waiting run is
due if that is sooner, waking early when this engine submits a run or sends a signal, and on
PostgreSQL when any process makes a run claimable (`store.watch_work`). The same loop runs
in `flowstore worker` processes, and recovers the runs of a crashed process as soon as it
starts. A worker never claims a run of a
definition it does not have (another version of the workflow): those wait for a worker that
has it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flowstore.errors import DatabaseGone, StoreError, StoreUnavailable
from flowstore.logs import engine_logger
from flowstore.store.protocol import Store
from flowstore.store.records import Claim, WorkerId

__all__ = ["ClaimLoop", "Trouble", "dead_local_workers", "process_identity"]

log = engine_logger("flowstore.worker")


class Trouble:
    """What an engine's claim loops are failing with, shared by them: an outage is logged
    once (not once per loop), and so is its end."""

    def __init__(self, worker_id: WorkerId) -> None:
        self._worker_id = worker_id
        self._kind: str | None = None

    def failed(self, error: Exception) -> None:
        """A claim failed with `error`: logged unless the loops already fail that way."""
        kind = type(error).__name__ if isinstance(error, StoreError) else "bug"
        if kind == self._kind:
            return
        self._kind = kind
        if isinstance(error, StoreError):  # the database is away or refused: kept trying
            log.warning("worker %s: %s", self._worker_id, error)
        else:  # a bug: it never stops the worker
            log.error(
                "worker %s: claiming or executing a run failed",
                self._worker_id,
                exc_info=error,
            )

    def claimed(self) -> None:
        """A claim went through: the trouble, if any, is over."""
        if self._kind is not None:
            self._kind = None
            log.warning("worker %s: claiming runs again", self._worker_id)


class ClaimLoop:
    """Claims and executes runs until stopped or cancelled.

    Args:
        store: The store.
        worker_id: The owner the claims are made for.
        claimable: The graph hashes of the definitions it can execute (read at each claim).
        lease_seconds: The lease of every claim (the engine heartbeat renews it).
        dead_workers: Returns the workers on this host whose process is gone.
        poll_seconds: The longest sleep when there is nothing to claim.
        execute: Executes a claimed run (the engine's, which holds it while it runs).
        trouble: Failures, shared with the engine's other loops so each is logged once.
    """

    def __init__(
        self,
        store: Store,
        worker_id: WorkerId,
        claimable: Callable[[], Collection[str]],
        lease_seconds: float,
        *,
        dead_workers: Callable[[], Awaitable[list[WorkerId]]],
        execute: Callable[[Claim], Awaitable[Any]],
        poll_seconds: float = 1.0,
        trouble: Trouble | None = None,
    ) -> None:
        self._trouble = trouble or Trouble(worker_id)
        self._store = store
        self._execute = execute
        self._worker_id = worker_id
        self._claimable = claimable
        self._lease_seconds = lease_seconds
        self._dead_workers = dead_workers
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._stopping = False
        self._due: datetime | None = None

    def wake(self) -> None:
        """Look for work now (a run was just submitted)."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more; end once the run executing now (if any) has ended."""
        self._stopping = True
        self._wake.set()

    async def run_forever(self) -> None:
        idle = 0.01
        while not self._stopping:
            try:
                worked = await self._claim_and_execute()
            except DatabaseGone:
                raise  # nothing can be written any more: the engine stops (`Engine.stopped`)
            except Exception as error:  # never let a failure stop the worker: try again
                self._trouble.failed(error)
                worked = False
            else:
                self._trouble.claimed()
            if worked:
                idle = 0.01
                continue
            if self._stopping:
                return
            self._wake.clear()
            pause = idle
            if self._due is not None:  # a waiting run is due sooner than the next look
                pause = min(pause, max((self._due - datetime.now(UTC)).total_seconds(), 0.005))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=pause)
            except TimeoutError:
                idle = min(idle * 2, self._poll_seconds)

    async def _claim_and_execute(self) -> bool:
        self._due = None
        hashes = list(self._claimable())
        if not hashes:
            return False
        claim = await self._store.claim_run(
            self._worker_id,
            lease_seconds=self._lease_seconds,
            graph_hashes=hashes,
            steal_from=await self._dead_workers(),
        )
        if claim is None:
            self._due = await self._store.next_wake_at(hashes)
            return False
        try:
            await self._execute(claim)
        except DatabaseGone:
            raise
        except StoreUnavailable:
            return False  # released (and logged) by `ownership.hold_run`: back off a while
        except Exception:  # ended or released, and logged, by `ownership.hold_run`
            return True
        return True


async def dead_local_workers(store: Store, me: WorkerId) -> list[WorkerId]:
    """Workers on this host, other than `me`, whose process no longer exists: their runs can
    be taken over at once, without waiting for their leases to expire.

    Only workers in the same PID namespace since the same boot count: a process in another
    container, even under the same host name, has PIDs this one cannot see."""
    host, identity = socket.gethostname(), process_identity()
    return [
        worker.id
        for worker in await store.list_workers()
        if worker.hostname == host
        and worker.id != me
        and identity
        and _identity(worker.metadata) == identity
        and not _alive(worker.pid)
    ]


def process_identity() -> dict[str, str]:
    """What tells this process's PID space apart from others on the same host: the kernel's
    boot id and the PID namespace (empty where the system does not say)."""
    return dict(_read_identity())


@functools.cache
def _read_identity() -> tuple[tuple[str, str], ...]:
    # Read once per process: every claim loop looks at it.
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        return ()
    return (("boot_id", boot_id), ("pid_ns", pid_ns))


def _identity(metadata: Any) -> dict[str, str]:
    if not isinstance(metadata, dict):
        return {}
    return {key: metadata[key] for key in ("boot_id", "pid_ns") if key in metadata}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True
