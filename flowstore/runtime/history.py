"""A run as it was at any point of its log: `RunReading.state_at` and `flowstore runs show
RUN --at SEQ`.

The log is the run's history: every status of the run and of each node execution has its
sequence number there. Replaying its rows up to a sequence number gives each status as it was
then; the outputs are those of the node executions that had succeeded by then (a node row
records the sequence number of its last change, and a succeeded execution changes no more).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowstore.errors import InvalidValue
from flowstore.store.protocol import Store
from flowstore.store.records import NodeStatus, RunId, RunStatus, TransitionKind

__all__ = ["NodeAt", "RunAt", "state_at"]


@dataclass(frozen=True, slots=True)
class NodeAt:
    """A node execution as it was at a point of its run's log.

    Attributes:
        node: The node.
        key: The execution's key (a loop iteration: `i1`, ...; "" for the first).
        status: Its status then.
        attempt: Its attempt then.
        output: Its output, when it had succeeded by then.
    """

    node: str
    key: str
    status: NodeStatus
    attempt: int | None
    output: Any = None


@dataclass(frozen=True, slots=True)
class RunAt:
    """A run as it was once the change numbered `seq` had been committed.

    Attributes:
        run_id: The run.
        seq: The sequence number.
        last_seq: The run's latest sequence number now.
        status: The run's status then.
        nodes: Each node execution begun by then, in the order each began.
    """

    run_id: RunId
    seq: int
    last_seq: int
    status: RunStatus
    nodes: list[NodeAt]

    def outputs(self) -> dict[str, Any]:
        """The outputs of the nodes that had succeeded, by node name (the latest iteration)."""
        return {node.node: node.output for node in self.nodes if node.output is not None}


async def state_at(store: Store, run_id: RunId, seq: int) -> RunAt:
    """The run as it was at sequence number `seq` of its log.

    Raises:
        RunNotFound: No run has this id.
        InvalidValue: `seq` is not a number of its log.
    """
    record = await store.get_run(run_id)
    if not 1 <= seq <= record.last_seq:
        raise InvalidValue(
            f"run {run_id} has sequence numbers 1 to {record.last_seq} in its log; {seq} is "
            "not one of them"
        )
    status = RunStatus.QUEUED
    begun: dict[tuple[str, str], NodeAt] = {}
    for row in await store.read_transitions(run_id, limit=seq):
        if row.kind is TransitionKind.RUN and row.status is not None:
            status = RunStatus(row.status)
        elif row.kind is TransitionKind.NODE and row.node is not None and row.status is not None:
            earlier = begun.get((row.node, row.key))
            attempt = row.attempt
            if attempt is None and earlier is not None:
                attempt = earlier.attempt
            begun[(row.node, row.key)] = NodeAt(row.node, row.key, NodeStatus(row.status), attempt)
    outputs = await store.read_outputs(run_id, at_seq=seq)
    nodes = [
        NodeAt(at.node, at.key, at.status, at.attempt, outputs.get((at.node, at.key)))
        if at.status is NodeStatus.SUCCEEDED
        else at
        for at in begun.values()
    ]
    return RunAt(run_id, seq, record.last_seq, status, nodes)
