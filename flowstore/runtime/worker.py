"""The claim loop: a worker takes queued runs, and runs whose owner died, and executes them.

Each of an engine's worker tasks loops: claim the next claimable run of a workflow it knows
(queued; or running with an expired lease; or owned by a process on this host that no longer
exists), execute it, repeat; with nothing to claim, it sleeps, waking early when this engine
submits a run. The same loop runs in `flowstore worker` processes, and recovers the runs of a
crashed process as soon as it starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from flowstore.definition.builder import Workflow
from flowstore.definition.validation import validate_inputs
from flowstore.errors import ExecutionError, InvalidValue, LeaseLost, StoreUnavailable
from flowstore.runtime.executor import execute_run
from flowstore.store.protocol import Store
from flowstore.store.records import Claim, RunId, WorkerId

__all__ = ["ClaimLoop", "dead_local_workers", "heartbeat"]

log = logging.getLogger("flowstore.worker")


class ClaimLoop:
    """Claims and executes runs until cancelled.

    Args:
        store: The store.
        worker_id: The owner the claims are made for.
        workflows: The workflows it can execute, by name.
        lease_seconds: The lease of every claim (the engine heartbeat renews it).
        dead_workers: Returns the workers on this host whose process is gone.
        finished: Told of every run this loop ended.
        poll_seconds: The longest sleep when there is nothing to claim.
        executing: Where the loop registers the cancel event of each run it executes.
    """

    def __init__(
        self,
        store: Store,
        worker_id: WorkerId,
        workflows: Mapping[str, Workflow],
        lease_seconds: float,
        *,
        dead_workers: Callable[[], Awaitable[list[WorkerId]]],
        finished: Callable[[RunId], None],
        poll_seconds: float = 1.0,
        executing: dict[RunId, asyncio.Event] | None = None,
        execute: Callable[..., Awaitable[Any]] = execute_run,
    ) -> None:
        self._store = store
        self._execute_run = execute
        self._worker_id = worker_id
        self._workflows = workflows
        self._lease_seconds = lease_seconds
        self._dead_workers = dead_workers
        self._finished = finished
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._refused: set[RunId] = set()
        self._executing = executing if executing is not None else {}

    def wake(self) -> None:
        """Look for work now (a run was just submitted)."""
        self._wake.set()

    async def run_forever(self) -> None:
        idle = 0.01
        while True:
            try:
                worked = await self._claim_and_execute()
            except StoreUnavailable as error:  # the database is away: keep trying, slowly
                log.warning("worker %s: %s", self._worker_id, error)
                worked = False
            except Exception:  # never let one bad run stop the worker; its lease will expire
                log.exception("worker %s: executing a run failed", self._worker_id)
                worked = False
            if worked:
                idle = 0.01
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=idle)
            except TimeoutError:
                idle = min(idle * 2, self._poll_seconds)

    async def _claim_and_execute(self) -> bool:
        names = list(self._workflows)
        if not names:
            return False
        claim = await self._store.claim_run(
            self._worker_id,
            lease_seconds=self._lease_seconds,
            workflows=names,
            steal_from=await self._dead_workers(),
        )
        if claim is None:
            return False
        if claim.run.id in self._refused:
            await self._store.release_lease(claim.run.id, self._worker_id, claim.fencing)
            return False
        try:
            await self._execute(claim)
        except LeaseLost as error:
            log.warning("worker %s gave up run %s: %s", self._worker_id, claim.run.id, error)
        except (ExecutionError, InvalidValue) as error:
            # Refused here (a changed definition, unusable inputs): leave it to another worker.
            log.error("worker %s cannot run %s: %s", self._worker_id, claim.run.id, error)
            self._refused.add(claim.run.id)
            await self._store.release_lease(claim.run.id, self._worker_id, claim.fencing)
        return True

    async def _execute(self, claim: Claim) -> None:
        workflow = self._workflows[claim.run.workflow]
        graph = workflow.compile()
        if graph.hash != claim.run.graph_hash:
            raise ExecutionError(
                f"run {claim.run.id} started under another definition of workflow "
                f"{graph.name!r} (graph {claim.run.graph_hash[:12]}, here {graph.hash[:12]})"
            )
        inputs = validate_inputs(graph, claim.run.inputs)
        cancelled = self._executing[claim.run.id] = asyncio.Event()
        try:
            await self._execute_run(self._store, claim, graph, inputs, cancelled=cancelled)
        finally:
            self._executing.pop(claim.run.id, None)
        self._finished(claim.run.id)


async def dead_local_workers(store: Store, me: WorkerId) -> list[WorkerId]:
    """Workers on this host, other than `me`, whose process no longer exists: their runs can
    be taken over at once, without waiting for their leases to expire."""
    host = socket.gethostname()
    return [
        worker.id
        for worker in await store.list_workers()
        if worker.hostname == host and worker.id != me and not _alive(worker.pid)
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


async def heartbeat(
    store: Store,
    worker_id: WorkerId,
    lease_seconds: float,
    executing: Mapping[RunId, asyncio.Event],
) -> None:
    """Heartbeat three times per lease (renewing the leases of the worker's runs); look for
    cancel requests of the runs `executing` twice a second, and set their events."""
    next_beat = asyncio.get_running_loop().time() + lease_seconds / 3
    while True:
        await asyncio.sleep(min(0.5, lease_seconds / 3))
        try:
            if asyncio.get_running_loop().time() >= next_beat:
                await store.heartbeat(worker_id, lease_seconds=lease_seconds)
                next_beat += lease_seconds / 3
            if executing:
                for run_id in await store.cancel_requests(worker_id):
                    if run_id in executing:
                        executing[run_id].set()
        except StoreUnavailable as error:  # keep beating: fencing guards what was lost
            log.warning("engine %s: heartbeat failed: %s", worker_id, error)
