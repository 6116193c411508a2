"""Reading a run's durable history back: its log, node executions, outputs and checkpoints
(`transitions.py` writes them)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from flowstore.store.records import (
    Checkpoint,
    NodeExecution,
    NodeStatus,
    RunId,
    Transition,
    TransitionKind,
)
from flowstore.store.schema import checkpoints, node_executions, transitions

__all__ = [
    "in_flight",
    "read_checkpoint",
    "read_events",
    "read_node_executions",
    "read_outputs",
    "read_transitions",
]

_EVENT = TransitionKind.EVENT.value


def in_flight(conn: Connection, run_id: RunId) -> list[tuple[str, str]]:
    """The (node, key) of the run's node executions that started and have not ended."""
    rows = conn.execute(
        select(node_executions.c.node, node_executions.c.exec_key).where(
            node_executions.c.run_id == run_id,
            node_executions.c.status.in_([NodeStatus.RUNNING.value, NodeStatus.RECOVERED.value]),
        )
    )
    return [(row.node, row.exec_key) for row in rows]


def read_transitions(
    conn: Connection, run_id: RunId, *, after_seq: int, limit: int | None
) -> list[Transition]:
    """The run's log rows with a sequence number above `after_seq`, in order."""
    stmt = (
        select(transitions)
        .where(transitions.c.run_id == run_id, transitions.c.seq > after_seq)
        .order_by(transitions.c.seq)
    )
    if limit is not None:
        stmt = stmt.limit(limit)
    return [Transition.from_row(row) for row in (conn.execute(stmt)).mappings()]


def read_events(conn: Connection, run_id: RunId, name: str, *, node: str, key: str) -> list[Any]:
    """The payloads of the run's events named `name` of one node execution, in order."""
    stmt = (
        select(transitions.c.payload)
        .where(
            transitions.c.run_id == run_id,
            transitions.c.kind == _EVENT,
            transitions.c.name == name,
            transitions.c.node == node,
            transitions.c.exec_key == key,
        )
        .order_by(transitions.c.seq)
    )
    return list(conn.execute(stmt).scalars())


def read_node_executions(conn: Connection, run_id: RunId) -> list[NodeExecution]:
    """Every node execution of the run, in the order they were last updated."""
    stmt = (
        select(node_executions)
        .where(node_executions.c.run_id == run_id)
        .order_by(node_executions.c.updated_seq)
    )
    return [NodeExecution.from_row(row) for row in (conn.execute(stmt)).mappings()]


def read_outputs(
    conn: Connection, run_id: RunId, *, at_seq: int | None, after_seq: int | None = None
) -> dict[tuple[str, str], Any]:
    """The outputs of the run's succeeded node executions, keyed by (node, key).

    With `at_seq`, only those that had succeeded by that sequence number: the state to fork
    or inspect the run from. With `after_seq`, only those that succeeded after it (a reader
    of the log that has the earlier ones).
    """
    table = node_executions.c
    stmt = select(table.node, table.exec_key, table.output).where(
        table.run_id == run_id, table.status == NodeStatus.SUCCEEDED.value
    )
    if at_seq is not None:
        stmt = stmt.where(table.updated_seq <= at_seq)
    if after_seq is not None:
        stmt = stmt.where(table.updated_seq > after_seq)
    return {(row.node, row.exec_key): row.output for row in conn.execute(stmt)}


def read_checkpoint(conn: Connection, run_id: RunId, *, at_seq: int | None) -> Checkpoint | None:
    """The run's latest checkpoint, or the latest at or before `at_seq`."""
    stmt = (
        select(checkpoints)
        .where(checkpoints.c.run_id == run_id)
        .order_by(checkpoints.c.seq.desc())
        .limit(1)
    )
    if at_seq is not None:
        stmt = stmt.where(checkpoints.c.seq <= at_seq)
    row = (conn.execute(stmt)).mappings().first()
    return None if row is None else Checkpoint.from_row(row)
