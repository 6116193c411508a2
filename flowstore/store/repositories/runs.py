"""Runs: creation, queries and cancelling (`ownership.py` claims them for workers)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Executable,
    Select,
    and_,
    bindparam,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection

from flowstore.errors import RunNotFound
from flowstore.store import prepared, serde
from flowstore.store.notices import notify_work
from flowstore.store.records import (
    Claim,
    NewRun,
    NodeStatus,
    RunId,
    RunQuery,
    RunRecord,
    RunStatus,
    StoredGraph,
    TransitionKind,
    WorkerId,
)
from flowstore.store.repositories._common import Encoder, upsert_for
from flowstore.store.repositories.queues import (
    check_queue,
)
from flowstore.store.schema import graphs, node_executions, runs, transitions

__all__ = [
    "CLAIMABLE",
    "claim_payload",
    "log_run_status",
    "cancel_requests",
    "create_run",
    "get_graph_spec",
    "list_graphs",
    "register_graphs",
    "get_run",
    "list_runs",
    "find_run_ids",
    "ended_runs",
    "reopen_run",
    "request_cancel",
]

CLAIMABLE = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


def create_run(conn: Connection, new: NewRun, *, now: datetime, encode: Encoder) -> RunRecord:
    """Insert a run (and its graph spec, once per hash) with its first transition.

    The run's id and creation time are those of `new` when it was planned (`NewRun.planned`),
    else a new UUID and `now`. Statements built once and run through `prepared`: building
    them per run cost about a millisecond, several times SQLite's own work.
    """
    record = new.planned(now).record()
    run_id, created = record.id, record.created_at
    if new.queue is not None:
        check_queue(conn, new.queue)
    inputs = encode(new.inputs, what=f"inputs of run {run_id}")
    spec = encode(new.spec, what=f"spec of workflow {new.workflow!r}")
    graph = {
        "hash": new.graph_hash,
        "workflow": new.workflow,
        "version": new.version,
        "spec": spec,
        "created_at": created,
    }
    prepared.execute_many(conn, _insert_graph(conn.dialect.name), [graph])
    row: dict[str, Any] = {column: getattr(record, column) for column in _RUN_COLUMNS}
    row["status"] = record.status.value
    row["inputs"] = inputs
    prepared.execute_many(conn, _INSERT_RUN, [row])
    payload = claim_payload(new.owner, 1) if new.owner is not None else None
    log_run_status(conn, run_id, 1, record.status, payload, created)
    if record.status is RunStatus.QUEUED:
        notify_work(conn, new.graph_hash)  # idle workers in other processes claim it
    # The record as a read would return it: the inputs as plain JSON data.
    return dataclasses.replace(record, inputs=serde.decode(inputs))


@cache
def _insert_graph(dialect: str) -> Executable:
    """INSERT a graph's spec unless its hash is stored already."""
    stmt: Executable = upsert_for(dialect, graphs).on_conflict_do_nothing(
        index_elements=[graphs.c.hash]
    )
    return stmt


_INSERT_RUN = runs.insert()
_RUN_COLUMNS = tuple(column.name for column in runs.columns)


def claim_payload(owner: str | None, fencing: int) -> dict[str, Any]:
    return {"owner": owner, "fencing": fencing}


def log_run_status(
    conn: Connection,
    run_id: RunId,
    seq: int,
    status: RunStatus,
    payload: dict[str, Any] | None,
    now: datetime,
) -> None:
    """Append a run-status row to the log, at the sequence number the caller reserved."""
    row = {
        "run_id": run_id,
        "seq": seq,
        "kind": TransitionKind.RUN.value,
        "name": None,
        "node": None,
        "exec_key": "",
        "status": status.value,
        "attempt": None,
        "payload": payload,
        "created_at": now,
    }
    prepared.execute_many(conn, _LOG_ROW, [row])


_LOG_ROW = transitions.insert()


def get_graph_spec(conn: Connection, graph_hash: str) -> Any:
    """The spec stored for a graph hash (JSON data), or None."""
    row = conn.execute(select(graphs.c.spec).where(graphs.c.hash == graph_hash)).first()
    return None if row is None else row.spec


def register_graphs(
    conn: Connection, stored: Sequence[StoredGraph], *, now: datetime, encode: Encoder
) -> None:
    """Store definitions, each once per hash (a hash stored already keeps its row)."""
    rows = [
        {
            "hash": graph.hash,
            "workflow": graph.workflow,
            "version": graph.version,
            "spec": encode(graph.spec, what=f"spec of workflow {graph.workflow!r}"),
            "created_at": now,
        }
        for graph in stored
    ]
    if rows:
        prepared.execute_many(conn, _insert_graph(conn.dialect.name), rows)


def list_graphs(conn: Connection, workflow: str) -> list[StoredGraph]:
    """A workflow's stored definitions, newest first."""
    stmt = (
        select(graphs)
        .where(graphs.c.workflow == workflow)
        .order_by(graphs.c.created_at.desc(), graphs.c.hash)
    )
    return [StoredGraph.from_row(row) for row in conn.execute(stmt).mappings()]


def get_run(conn: Connection, run_id: RunId) -> RunRecord:
    """Read one run; raise `RunNotFound` when there is none."""
    rows = prepared.select_rows(conn, _GET_RUN, {"run_id": run_id})
    if not rows:
        raise RunNotFound(f"no run has the id {run_id!r}")
    return RunRecord.from_row(dict(zip(runs.c.keys(), rows[0], strict=True)))


_GET_RUN = select(runs).where(runs.c.id == bindparam("run_id"))


def list_runs(conn: Connection, query: RunQuery) -> list[RunRecord]:
    """The runs matching `query`, newest first."""
    result = conn.execute(list_runs_query(query, dialect=conn.dialect.name))
    return [RunRecord.from_row(row) for row in result.mappings()]


def list_runs_query(query: RunQuery, *, dialect: str) -> Select[Any]:
    """The SELECT of `list_runs` (an index on status or workflow, then creation, serves it;
    a page after a given run starts where that run is in the index)."""
    stmt = select(runs).order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(query.limit)
    if query.workflow is not None:
        stmt = stmt.where(runs.c.workflow == query.workflow)
    if query.statuses is not None:
        stmt = stmt.where(runs.c.status.in_([status.value for status in query.statuses]))
    if query.created_after is not None:
        stmt = stmt.where(runs.c.created_at >= query.created_after)
    if query.created_before is not None:
        stmt = stmt.where(runs.c.created_at < query.created_before)
    if query.parent_run_id is not None:
        stmt = stmt.where(runs.c.parent_run_id == query.parent_run_id)
    if query.id_prefix:
        stmt = stmt.where(_id_starts_with(query.id_prefix, dialect))
    if query.listed_after is not None:
        # A row value: both backends read it as where to start in the index, not a filter.
        created_at, run_id = query.listed_after
        stmt = stmt.where(
            tuple_(runs.c.created_at, runs.c.id)
            < tuple_(literal(created_at, runs.c.created_at.type), literal(run_id))
        )
    return stmt


def find_run_ids(conn: Connection, prefix: str, *, limit: int) -> list[RunId]:
    """The ids of runs that start with `prefix` (as given: `%` and `_` are no wildcards)."""
    stmt = find_run_ids_query(prefix, limit=limit, dialect=conn.dialect.name)
    return [RunId(row.id) for row in conn.execute(stmt)]


def find_run_ids_query(prefix: str, *, limit: int, dialect: str) -> Select[Any]:
    """The SELECT of `find_run_ids`."""
    stmt = select(runs.c.id).where(_id_starts_with(prefix, dialect))
    return stmt.order_by(runs.c.id).limit(limit)


def _id_starts_with(prefix: str, dialect: str) -> ColumnElement[bool]:
    """Run ids that start with `prefix`. On SQLite, whose LIKE ignores case and reads every
    row, a range of the primary key (text compares byte by byte there): from `prefix` to the
    prefix with its last character's successor. PostgreSQL's collation may not order a range
    that way: there, LIKE with the whole pattern as one value, which the planner reads as a
    range of `ix_flowstore_runs_id_prefix` (pattern operators, exact in any collation)."""
    if dialect != "sqlite" or not prefix or prefix[-1] == "\U0010ffff":
        escaped = prefix.replace("/", "//").replace("%", "/%").replace("_", "/_")
        return runs.c.id.like(escaped + "%", escape="/")
    after = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(runs.c.id >= prefix, runs.c.id < after)


def ended_runs(conn: Connection, run_ids: Sequence[RunId]) -> list[RunId]:
    """Which of `run_ids` have ended (succeeded, failed or cancelled)."""
    ended = [status.value for status in RunStatus if status.is_terminal]
    found: list[RunId] = []
    for start in range(0, len(run_ids), _IDS_PER_QUERY):
        chunk = run_ids[start : start + _IDS_PER_QUERY]
        stmt = select(runs.c.id).where(runs.c.id.in_(chunk), runs.c.status.in_(ended))
        found += [RunId(row.id) for row in conn.execute(stmt)]
    return found


_IDS_PER_QUERY = 500  # well under SQLite's limit of bound parameters per statement


def request_cancel(conn: Connection, run_id: RunId, *, now: datetime) -> RunRecord:
    """Cancel a queued or waiting run at once; ask the owner of a running run to cancel it.

    Needs no lease: a queued or waiting run has no owner (a waiting run's node executions
    that wait end `cancelled` with it), and a running run is only flagged (its owner records
    the cancellation, with its fencing number, when it stops). An ended run is left as it is.
    """
    unowned = (RunStatus.QUEUED.value, RunStatus.WAITING.value)
    cancelled = (
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status.in_(unowned))
            .values(
                status=RunStatus.CANCELLED.value,
                finished_at=now,
                updated_at=now,
                cancel_requested_at=now,
                wake_at=None,
                last_seq=runs.c.last_seq + 1,
            )
            .returning(*runs.c)
        )
        .mappings()
        .first()
    )
    if cancelled is not None:
        record = RunRecord.from_row(cancelled)
        conn.execute(
            update(node_executions)
            .where(
                node_executions.c.run_id == run_id,
                node_executions.c.status == NodeStatus.WAITING.value,
            )
            .values(status=NodeStatus.CANCELLED.value, finished_at=now)
        )
        payload = {"requested": True}
        log_run_status(conn, run_id, record.last_seq, RunStatus.CANCELLED, payload, now)
        return record
    conn.execute(
        update(runs)
        .where(
            runs.c.id == run_id,
            runs.c.status == RunStatus.RUNNING.value,
            runs.c.cancel_requested_at.is_(None),
        )
        .values(cancel_requested_at=now, updated_at=now)
    )
    return get_run(conn, run_id)


def cancel_requests(conn: Connection, owner: WorkerId) -> frozenset[RunId]:
    """The running runs owned by `owner` that someone asked to cancel."""
    rows = conn.execute(
        select(runs.c.id).where(
            runs.c.lease_owner == owner,
            runs.c.status == RunStatus.RUNNING.value,
            runs.c.cancel_requested_at.is_not(None),
        )
    )
    return frozenset(RunId(run_id) for run_id in rows.scalars())


def requeue_failed_run(conn: Connection, run_id: RunId, *, now: datetime) -> RunRecord | None:
    """A failed run back to `queued`, for any worker with its definition to continue from
    what it committed (as `reopen_run` does for one owner); None if it is not failed."""
    run = _reopened(conn, run_id, now, RunStatus.QUEUED, lease_owner=None, lease_expires_at=None)
    if run is None:
        return None
    log_run_status(conn, run.id, run.last_seq, RunStatus.QUEUED, {"reopened": True}, now)
    notify_work(conn, run.graph_hash)
    return run


def reopen_run(
    conn: Connection, run_id: RunId, owner: WorkerId, *, now: datetime, lease_seconds: float
) -> Claim | None:
    """Take a failed run back to `running`, owned by `owner`, to resume it; None if it is not
    failed. Its log and node executions stay: what succeeded is not run again."""
    expires = now + timedelta(seconds=lease_seconds)
    run = _reopened(
        conn,
        run_id,
        now,
        RunStatus.RUNNING,
        lease_owner=owner,
        lease_expires_at=expires,
        fencing=runs.c.fencing + 1,
    )
    if run is None:
        return None
    payload = {**claim_payload(owner, run.fencing), "reopened": True}
    log_run_status(conn, run.id, run.last_seq, RunStatus.RUNNING, payload, now)
    return Claim(run=run, owner=owner, fencing=run.fencing, lease_expires_at=expires)


def _reopened(
    conn: Connection, run_id: RunId, now: datetime, status: RunStatus, **values: Any
) -> RunRecord | None:
    """A failed run made `status` again, its ending forgotten and a log row reserved (with
    `values` set too); None if it is not failed."""
    row = (
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id, runs.c.status == RunStatus.FAILED.value)
            .values(
                status=status.value,
                output=None,
                error=None,
                finished_at=None,
                last_seq=runs.c.last_seq + 1,
                updated_at=now,
                **values,
            )
            .returning(*runs.c)
        )
        .mappings()
        .first()
    )
    return None if row is None else RunRecord.from_row(row)
