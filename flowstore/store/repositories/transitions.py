"""The transition log, node executions and checkpoints: a run's durable history.

`record_transitions` is the write path of every run. In one transaction it checks the
caller's fencing number and reserves a gapless range of sequence numbers with a single
`UPDATE ... RETURNING` on the run row (which also serializes writers of the same run), then
upserts the node rows, appends the log rows and stores the checkpoint. On PostgreSQL, when
the caller numbered the changes, the run row, node rows and log rows are one statement
(`_reserve_and_append`): one round trip instead of one per table. The rows themselves are
built by `log_rows.py`; reading the history back is `history.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Executable,
    Table,
    Update,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from flowstore.errors import LeaseLost
from flowstore.store import prepared
from flowstore.store.notices import CHANNEL, notify_work
from flowstore.store.records import (
    UNSET,
    Change,
    CommitResult,
    NodeStatus,
    RunChange,
    RunId,
    RunStatus,
)
from flowstore.store.repositories import memory, waits
from flowstore.store.repositories._common import Encoder, driver_rows, upsert_for
from flowstore.store.repositories.log_rows import NodeRow, Rows, build_rows, node_values
from flowstore.store.repositories.ownership import lease_lost
from flowstore.store.schema import (
    checkpoints,
    error_reports,
    llm_calls,
    node_executions,
    runs,
    transitions,
)

__all__ = ["record_transitions"]

_OPEN = {"r_queued": RunStatus.QUEUED.value, "r_running": RunStatus.RUNNING.value}
"""The statuses of a run that can still be written to (bound parameters of `_reserve`)."""


def record_transitions(
    conn: Connection,
    run_id: RunId,
    fencing: int,
    changes: Sequence[Change],
    *,
    now: datetime,
    encode: Encoder,
    expected_seq: int | None = None,
) -> CommitResult:
    """Append `changes` to the run's log and apply them, all or nothing.

    With `expected_seq`, the first change must take that sequence number (the writer numbered
    the changes itself, and told live readers so). On PostgreSQL, readers of the run in other
    processes are notified, once this commits, that its log grew; and when the changes end
    the run or make it wait and it is in a queue, idle workers everywhere are told its place
    is free for the queue's next run.

    Raises:
        LeaseLost: `fencing` is not the run's current fencing number, the run has ended, or
            the log is not where `expected_seq` says; nothing is written.
        RunNotFound: There is no such run.
    """
    run_values: dict[str, Any] = {}
    frees = False  # the run ends or waits: it gives its place in a queue up
    for change in changes:
        if isinstance(change, RunChange):
            frees = frees or change.status.is_terminal or change.status is RunStatus.WAITING
            run_values["status"] = change.status.value
            if change.output is not UNSET:
                run_values["output"] = encode(change.output, what=f"output of run {run_id}")
            if change.error is not UNSET:
                run_values["error"] = encode(change.error, what=f"error of run {run_id}")
            if change.status.is_terminal:
                run_values.update(finished_at=now, lease_owner=None, lease_expires_at=None)
            elif change.status is RunStatus.WAITING:
                # No owner while it waits: any worker claims it when it is due, and the one
                # that had it writes nothing more (a waiting run takes no writes).
                run_values.update(wake_at=change.wake_at, lease_owner=None, lease_expires_at=None)
    reserving = {"r_run_id": run_id, "r_fencing": fencing, "r_count": len(changes), "r_now": now}
    reserving.update(_OPEN)
    reserving.update({f"r_{name}": value for name, value in run_values.items()})
    if expected_seq is not None:
        reserving["r_after"] = expected_seq - 1
    columns = tuple(sorted(run_values))
    notify = bool(changes) and conn.dialect.name == "postgresql"
    # On PostgreSQL the run row tells its queue as it is reserved (no read of its own).
    queued = notify and frees
    if notify and expected_seq is not None:
        # The numbers are known before the run row is checked: one statement, one round trip.
        rows = build_rows(changes, expected_seq, run_id, now, encode, run_values)
        reserved = _reserve_and_append(conn, columns, reserving, rows, queued)
        if reserved is None:
            raise _refused(conn, run_id, fencing, expected_seq)
        last_seq, queue = reserved
    else:
        found = prepared.execute(
            conn, _reserve(columns, expected_seq is not None, notify, queued), reserving
        )
        if not found:
            raise _refused(conn, run_id, fencing, expected_seq)
        last_seq, queue = found[0][0], found[0][-1] if queued else None
        rows = build_rows(changes, last_seq - len(changes) + 1, run_id, now, encode, run_values)
        if rows.nodes:
            _upsert_nodes(conn, run_id, rows.nodes.values(), now)
        if rows.log:
            _execute_rows(conn, _append_log, transitions, rows.log)
    first_seq = last_seq - len(changes) + 1
    prepared.execute_many(conn, _APPEND_CHECKPOINT, rows.checkpoints)
    if rows.errors:
        conn.execute(error_reports.insert(), rows.errors)
    if rows.llm_calls:
        conn.execute(llm_calls.insert(), rows.llm_calls)
    for memory_change in rows.memory:
        memory.apply_change(conn, run_id, memory_change, now=now, encode=encode)
    for wait_change in rows.waits:
        waits.apply_change(conn, run_id, wait_change, now=now)
    for change in changes:
        if isinstance(change, RunChange) and change.status is RunStatus.WAITING:
            # A signal sent while the run was still running (before this commit) makes it
            # due at once: its sender saw it running, and woke nobody.
            waits.due_if_signalled(conn, run_id, change.signals, now=now)
    if queue is not None:
        notify_work(conn, "")  # the queue's next run may be of any definition
    return CommitResult(first_seq=first_seq, last_seq=last_seq)


# Statements built once: building and cache-keying a statement costs more than running it.
@cache
def _reserve(
    columns: tuple[str, ...], expected: bool, notify: bool = False, queue: bool = False
) -> Update:
    """Check the fencing number and that the run has not ended (and with `expected`, where
    the log is), reserve sequence numbers, and set `columns` of the run; with `notify`
    (PostgreSQL), tell the run's readers once this commits. Returns the last sequence number
    reserved (and with `queue`, last, the run's queue)."""
    stmt = update(runs).where(
        runs.c.id == bindparam("r_run_id"),
        runs.c.fencing == bindparam("r_fencing"),
        or_(runs.c.status == bindparam("r_queued"), runs.c.status == bindparam("r_running")),
    )
    if expected:
        stmt = stmt.where(runs.c.last_seq == bindparam("r_after"))
    stmt = stmt.values(
        last_seq=runs.c.last_seq + bindparam("r_count"), updated_at=bindparam("r_now")
    ).values({name: bindparam(f"r_{name}", type_=runs.c[name].type) for name in columns})
    returned: list[Any] = [runs.c.last_seq]
    if notify:
        returned.append(func.pg_notify(CHANNEL, bindparam("r_run_id")))
    if queue:
        returned.append(runs.c.queue)
    return stmt.returning(*returned)


def _reserve_and_append(
    conn: Connection,
    columns: tuple[str, ...],
    reserving: dict[str, Any],
    rows: Rows,
    queue: bool,
) -> tuple[int, str | None] | None:
    """PostgreSQL: reserve the numbers (as `_reserve` does, expected and notifying), upsert
    the node rows and append the log rows in one statement, each table's rows sent as one
    array per column; the rows are written only if the run row was. The run's last sequence
    number and (with `queue`) its queue, or None when the run row refused the write (nothing
    was written)."""
    parameters = dict(reserving)
    log_columns = _UNNESTED[transitions.name]
    for index, name in log_columns:
        parameters[f"l_{name}"] = [row[index] for row in rows.log]
    node_columns = _UNNESTED[node_executions.name]
    run_id, now = reserving["r_run_id"], reserving["r_now"]
    nodes = [node_values(run_id, row, now) for row in rows.nodes.values()]
    for index, name in node_columns:
        parameters[f"n_{name}"] = [row[index] for row in nodes]
    statement = _reserving_and_appending(columns, bool(nodes), queue)
    found = conn.execute(statement, parameters).first()
    if found is None:
        return None
    return int(found[0]), found[1] if queue else None


_CONSTANT = {"run_id": "r_run_id", "created_at": "r_now", "updated_at": "r_now"}
"""Columns every row of a batch shares: one parameter, not an array."""

_UNNESTED = {
    table.name: [
        (index, column.name) for index, column in enumerate(table.c) if column.name not in _CONSTANT
    ]
    for table in (transitions, node_executions)
}
"""(position in a row, name) of the columns sent as arrays."""


@cache
def _reserving_and_appending(columns: tuple[str, ...], with_nodes: bool, queue: bool) -> Executable:
    reserved = _reserve(columns, True, queue=queue).cte("reserved")
    written = exists(select(reserved.c.last_seq))
    appends = [_append_from_arrays(transitions, "l", written)]
    if with_nodes:
        appends.append(_append_from_arrays(node_executions, "n", written))
    notify = func.pg_notify(CHANNEL, bindparam("r_run_id"))
    returned = [reserved.c.last_seq, *([reserved.c.queue] if queue else []), notify]
    return select(*returned).add_cte(*appends)


def _append_from_arrays(table: Table, prefix: str, written: Any) -> Any:
    """INSERT (for node executions: upsert) the rows of `table` held in arrays named
    `{prefix}_{column}`, when `written`: a CTE of `_reserving_and_appending`."""
    unnested = _UNNESTED[table.name]
    arrays = func.unnest(
        *(bindparam(f"{prefix}_{name}", type_=ARRAY(table.c[name].type)) for _, name in unnested)
    )
    source = arrays.table_valued(*(name for _, name in unnested)).render_derived(name=prefix)
    values = [
        bindparam(_CONSTANT[column.name], type_=column.type)
        if column.name in _CONSTANT
        else source.c[column.name]
        for column in table.c
    ]
    chosen = select(*values).where(written)
    if table is transitions:
        return table.insert().from_select(list(table.c.keys()), chosen).cte(f"{prefix}build_rows")
    insert = postgresql.insert(table).from_select(list(table.c.keys()), chosen)
    return insert.on_conflict_do_update(
        index_elements=[table.c.run_id, table.c.node, table.c.exec_key],
        set_=_node_folding(insert.excluded),
    ).cte(f"{prefix}build_rows")


def _refused(conn: Connection, run_id: RunId, fencing: int, expected_seq: int | None) -> LeaseLost:
    error = lease_lost(conn, run_id, fencing)
    if expected_seq is None:
        return error
    row = conn.execute(select(runs.c.fencing, runs.c.last_seq).where(runs.c.id == run_id)).first()
    if row is None or row.fencing != fencing:
        return error
    return LeaseLost(
        f"run {run_id}'s log ends at sequence number {row.last_seq}, but this write was "
        f"numbered from {expected_seq}: another writer appended to it; nothing was written"
    )


_APPEND_CHECKPOINT = checkpoints.insert()


def _execute_rows(
    conn: Connection,
    statement: Callable[[str], Executable],
    table: Table,
    rows: list[list[Any]],
) -> None:
    """INSERT `rows` (lists in the order of `table.c`) with `statement(dialect)`: on SQLite
    straight to the driver, elsewhere through SQLAlchemy."""
    dialect = conn.dialect.name
    if prepared.fast_path(conn):
        prepared.execute_values(conn, statement(dialect), driver_rows(rows, table))
        return
    columns = table.c.keys()
    mappings = [dict(zip(columns, row, strict=True)) for row in rows]
    prepared.execute_many(conn, statement(dialect), mappings)


@cache
def _append_log(dialect: str) -> Executable:
    """INSERT log rows."""
    return transitions.insert()


@cache
def _node_upsert(dialect: str) -> Executable:
    """INSERT a node execution, or fold the change into its row; UNSET fields arrive as NULL."""
    stmt = upsert_for(dialect, node_executions)
    table = node_executions.c
    upserted: Executable = stmt.on_conflict_do_update(
        index_elements=[table.run_id, table.node, table.exec_key],
        set_=_node_folding(stmt.excluded),
    )
    return upserted


def _node_folding(new: Any) -> dict[str, Any]:
    """How a node execution row takes in a batch's net change `new` (the row proposed)."""
    table = node_executions.c
    return {
        "status": new.status,
        "attempt": case((new.attempt > table.attempt, new.attempt), else_=table.attempt),
        "input": func.coalesce(new.input, table.input),
        "output": func.coalesce(new.output, table.output),
        "error": case(
            (new.status == NodeStatus.SUCCEEDED.value, None),
            else_=func.coalesce(new.error, table.error),
        ),
        "started_at": func.coalesce(new.started_at, table.started_at),
        "finished_at": new.finished_at,
        "updated_seq": new.updated_seq,
        "duration_ms": case(
            (new.status == NodeStatus.RUNNING.value, None),
            else_=func.coalesce(new.duration_ms, table.duration_ms),
        ),
        "span_id": func.coalesce(new.span_id, table.span_id),
    }


def _upsert_nodes(conn: Connection, run_id: RunId, rows: Iterable[NodeRow], now: datetime) -> None:
    _execute_rows(
        conn, _node_upsert, node_executions, [node_values(run_id, row, now) for row in rows]
    )
