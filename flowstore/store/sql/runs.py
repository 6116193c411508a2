"""`SQLStore`'s parts for runs, their owners and their logs (see `flowstore.store.sql`)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from flowstore.store.protocol import RunLog, RunStore, WorkerStore
from flowstore.store.records import (
    Change,
    Checkpoint,
    Claim,
    CommitResult,
    MetricPoint,
    NewRun,
    NodeExecution,
    RunChange,
    RunId,
    RunQuery,
    RunRecord,
    Signal,
    Span,
    StoredGraph,
    Transition,
    Wait,
    WorkerId,
    WorkerInfo,
)
from flowstore.store.repositories import (
    commits,
    history,
    ownership,
    runs,
    signals,
    waits,
)
from flowstore.store.transactions import SQLTransactions

__all__ = ["SQLRunLog", "SQLRuns", "SQLWorkers"]


class SQLRuns(SQLTransactions, RunStore):
    """`RunStore` over SQL."""

    async def create_run(self, new: NewRun) -> RunRecord:
        return await self._write(
            f"creating a run of {new.workflow!r}",
            runs.create_run,
            new,
            now=self._now(),
            encode=self._encode,
        )

    def plan_run(self, new: NewRun) -> NewRun:
        return new.planned(self._now())

    async def get_graph_spec(self, graph_hash: str) -> Any:
        return await self._read(
            f"reading the definition {graph_hash[:12]}", runs.get_graph_spec, graph_hash
        )

    async def register_graphs(self, graphs: Sequence[StoredGraph]) -> None:
        await self._write(
            "storing workflow definitions",
            runs.register_graphs,
            graphs,
            now=self._now(),
            encode=self._encode,
        )

    async def list_graphs(self, workflow: str) -> list[StoredGraph]:
        return await self._read(
            f"reading the definitions of {workflow!r}", runs.list_graphs, workflow
        )

    async def get_run(self, run_id: RunId) -> RunRecord:
        return await self._read(f"reading run {run_id}", runs.get_run, run_id)

    async def list_runs(self, query: RunQuery | None = None) -> list[RunRecord]:
        return await self._read("listing runs", runs.list_runs, query or RunQuery())

    async def ended_runs(self, run_ids: Sequence[RunId]) -> list[RunId]:
        return await self._read("reading which runs ended", runs.ended_runs, run_ids)

    async def find_run_ids(self, prefix: str, *, limit: int = 10) -> list[RunId]:
        return await self._read(
            f"finding runs {prefix!r}...", runs.find_run_ids, prefix, limit=limit
        )

    async def send_signal(
        self, run_id: RunId, name: str, payload: Any, *, idempotency_key: str | None = None
    ) -> Signal:
        return await self._write(
            f"sending signal {name!r} to run {run_id}",
            signals.send_signal,
            run_id,
            name,
            payload,
            idempotency_key=idempotency_key,
            now=self._now(),
            encode=self._encode,
        )

    async def list_signals(self, run_id: RunId) -> list[Signal]:
        return await self._read(
            f"reading the signals of run {run_id}", signals.list_signals, run_id
        )

    async def next_signal(self, run_id: RunId, name: str) -> Signal | None:
        return await self._read(
            f"reading the signals of run {run_id}", waits.next_signal, run_id, name
        )

    async def read_waits(self, run_id: RunId) -> list[Wait]:
        return await self._read(f"reading the waits of run {run_id}", waits.read_waits, run_id)

    async def request_cancel(self, run_id: RunId) -> RunRecord:
        return await self._write(
            f"cancelling run {run_id}", runs.request_cancel, run_id, now=self._now()
        )


class SQLWorkers(SQLTransactions, WorkerStore):
    """`WorkerStore` over SQL."""

    async def claim_run(
        self,
        owner: WorkerId,
        *,
        lease_seconds: float,
        workflows: Collection[str] | None = None,
        graph_hashes: Collection[str] | None = None,
        run_id: RunId | None = None,
        steal_from: Collection[WorkerId] = (),
    ) -> Claim | None:
        return await self._write(
            "claiming a run",
            ownership.claim_run,
            owner,
            clock=self._now,
            lease_seconds=lease_seconds,
            workflows=workflows,
            graph_hashes=graph_hashes,
            run_id=run_id,
            steal_from=steal_from,
        )

    async def next_wake_at(self, graph_hashes: Collection[str]) -> datetime | None:
        return await self._read(
            "reading when a waiting run is due", ownership.next_wake_at, graph_hashes
        )

    async def renew_lease(
        self, run_id: RunId, owner: WorkerId, fencing: int, *, lease_seconds: float
    ) -> datetime:
        return await self._write(
            f"renewing the lease of run {run_id}",
            ownership.renew_lease,
            run_id,
            owner,
            fencing,
            now=self._now(),
            lease_seconds=lease_seconds,
        )

    async def release_lease(self, run_id: RunId, owner: WorkerId, fencing: int) -> bool:
        return await self._write(
            f"releasing the lease of run {run_id}", ownership.release_lease, run_id, owner, fencing
        )

    async def reopen_run(
        self, run_id: RunId, owner: WorkerId, *, lease_seconds: float
    ) -> Claim | None:
        return await self._write(
            f"reopening run {run_id}",
            runs.reopen_run,
            run_id,
            owner,
            now=self._now(),
            lease_seconds=lease_seconds,
        )

    async def requeue_failed_run(self, run_id: RunId) -> RunRecord | None:
        return await self._write(
            f"queueing failed run {run_id} again", runs.requeue_failed_run, run_id, now=self._now()
        )

    async def end_run(self, run_id: RunId, fencing: int, ending: RunChange) -> bool:
        return await self._write(
            f"ending run {run_id}",
            commits.end_run,
            run_id,
            fencing,
            ending,
            now=self._now(),
            encode=self._encode,
        )

    async def cancel_requests(self, owner: WorkerId) -> frozenset[RunId]:
        return await self._read(f"reading cancel requests of {owner}", runs.cancel_requests, owner)

    async def register_worker(self, worker: WorkerInfo) -> None:
        await self._write(f"registering worker {worker.id}", ownership.register_worker, worker)

    async def heartbeat(
        self,
        worker: WorkerInfo,
        *,
        leases: Mapping[RunId, int],
        lease_seconds: float,
        forget_after: float = 3600.0,
    ) -> frozenset[RunId]:
        return await self._write(
            f"recording a heartbeat of worker {worker.id}",
            ownership.heartbeat,
            worker,
            leases,
            now=self._now(),
            lease_seconds=lease_seconds,
            forget_after=forget_after,
        )

    async def list_workers(self, *, heartbeat_since: datetime | None = None) -> list[WorkerInfo]:
        return await self._read(
            "listing workers", ownership.list_workers, heartbeat_since=heartbeat_since
        )

    async def remove_worker(self, worker_id: WorkerId) -> bool:
        return await self._write(f"removing worker {worker_id}", ownership.remove_worker, worker_id)


class SQLRunLog(SQLTransactions, RunLog):
    """`RunLog` over SQL."""

    async def record_transitions(
        self,
        run_id: RunId,
        fencing: int,
        changes: Sequence[Change],
        *,
        metrics: Sequence[MetricPoint] = (),
        spans: Sequence[Span] = (),
        cache_keys: Sequence[str] = (),
        expected_seq: int | None = None,
        create: NewRun | None = None,
    ) -> CommitResult:
        action = f"recording transitions of run {run_id}"
        if create is not None:
            action = f"creating run {run_id} of {create.workflow!r}"
        alone = commits.is_one_statement(
            changes, metrics, spans, cache_keys, expected_seq=expected_seq, create=create
        )
        return await (self._write_alone if alone else self._write)(
            action,
            commits.record_commit,
            run_id,
            fencing,
            changes,
            metrics,
            spans,
            cache_keys,
            now=self._now(),
            encode=self._encode,
            expected_seq=expected_seq,
            create=create,
        )

    async def read_transitions(
        self, run_id: RunId, *, after_seq: int = 0, limit: int | None = None
    ) -> list[Transition]:
        return await self._read(
            f"reading the transitions of run {run_id}",
            history.read_transitions,
            run_id,
            after_seq=after_seq,
            limit=limit,
        )

    async def read_events(self, run_id: RunId, name: str, *, node: str, key: str) -> list[Any]:
        return await self._read(
            f"reading the {name} events of run {run_id}",
            history.read_events,
            run_id,
            name,
            node=node,
            key=key,
        )

    async def read_node_executions(self, run_id: RunId) -> list[NodeExecution]:
        return await self._read(
            f"reading the node executions of run {run_id}", history.read_node_executions, run_id
        )

    async def read_outputs(
        self, run_id: RunId, *, at_seq: int | None = None, after_seq: int | None = None
    ) -> dict[tuple[str, str], Any]:
        return await self._read(
            f"reading the outputs of run {run_id}",
            history.read_outputs,
            run_id,
            at_seq=at_seq,
            after_seq=after_seq,
        )

    async def read_checkpoint(
        self, run_id: RunId, *, at_seq: int | None = None
    ) -> Checkpoint | None:
        return await self._read(
            f"reading the checkpoint of run {run_id}",
            history.read_checkpoint,
            run_id,
            at_seq=at_seq,
        )
