"""A run's changes: what one commit of its log writes, each change taking one sequence number.

Re-exported by `flowstore.store.records`; the same conventions hold (frozen, slotted
dataclasses).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowstore.store.records import UNSET, NodeStatus, RunStatus
from flowstore.store.support_records import MemoryChange

__all__ = [
    "Change",
    "CheckpointChange",
    "ErrorChange",
    "EventChange",
    "LlmCallChange",
    "NodeChange",
    "RunChange",
    "WaitChange",
]


@dataclass(frozen=True, slots=True)
class RunChange:
    """A change of the run's status, with its output or error when it ends. A run that goes
    `waiting` gives its earliest deadline (`wake_at`: None waits for signals only) and the
    signals its nodes wait for (`signals`): one sent meanwhile makes it due at once."""

    status: RunStatus
    output: Any = UNSET
    error: Any = UNSET
    wake_at: datetime | None = None
    signals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NodeChange:
    """A change of one node execution's status.

    Attributes:
        node: The node's name.
        status: The new status.
        key: Tells executions of the same node apart (a loop iteration, a map item); "" for
            a node that runs once.
        attempt: The attempt number, when it changes.
        input: The inputs the node was called with.
        output: The node's output, on success.
        error: The error, on failure.
        duration_ms: How long the execution took, when it ends.
        span_id: The execution's trace span, when it starts.
    """

    node: str
    status: NodeStatus
    key: str = ""
    attempt: int | None = None
    input: Any = UNSET
    output: Any = UNSET
    error: Any = UNSET
    duration_ms: float | None = None
    span_id: str | None = None


@dataclass(frozen=True, slots=True)
class EventChange:
    """An event recorded in the log (a token, a custom event, the engine's own).

    Attributes:
        name: What happened: `token` for a piece of a node's streamed output, else the
            event's name.
        payload: Its JSON value (a token's text).
        node: The node it belongs to, if any.
        key: The node execution's key.
        attempt: The node's attempt that emitted it, if a node did.
    """

    name: str
    payload: Any = None
    node: str | None = None
    key: str = ""
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class CheckpointChange:
    """Scheduler state to resume from, stored at this change's sequence number.

    It holds what cannot be derived from node executions (loop counters, a router's choice),
    never a copy of the outputs, so checkpoint storage stays O(total output size).
    """

    state: Any


@dataclass(frozen=True, slots=True)
class ErrorChange:
    """A failure and what happened next, reported in the same transaction as its transitions.

    It writes a row of the error reports (queryable with `flowstore errors`) and an `error`
    event in the log.

    Attributes:
        error_type: The exception's `module.QualName`.
        message: The exception's message.
        outcome: What happened next: `retried`, `fell_back`, `failed_run`, `cancelled`.
        node: The node that failed; None for the run itself.
        key: The node execution's key.
        attempt: The attempt that failed.
        traceback: The formatted traceback.
        details: Anything else worth keeping (JSON).
    """

    error_type: str
    message: str
    outcome: str
    node: str | None = None
    key: str = ""
    attempt: int | None = None
    traceback: str | None = None
    details: Any = None


@dataclass(frozen=True, slots=True)
class WaitChange:
    """A wait of a node execution began or ended (`flowstore_waits`), committed with the run.

    Attributes:
        node: The node that waits.
        key: Its execution's key.
        seq: The wait's number within the node execution (its first wait is 1).
        kind: `sleep` or `signal`.
        name: The signal waited for.
        wake_at: When a sleep ends or a signal wait times out; None waits without end.
        outcome: None while it waits; then `woke`, `signalled` or `timed_out`.
        signal_id: The signal it took (marked consumed in the same transaction).
    """

    node: str
    key: str
    seq: int
    kind: str
    name: str | None = None
    wake_at: datetime | None = None
    outcome: str | None = None
    signal_id: int | None = None

    def summary(self) -> dict[str, Any]:
        """What the run's log keeps of it (a `wait` event)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "seq": self.seq,
            "wake_at": None if self.wake_at is None else self.wake_at.isoformat(),
            "outcome": self.outcome,
            "signal_id": self.signal_id,
        }


@dataclass(frozen=True, slots=True)
class LlmCallChange:
    """One call to a model's chat endpoint and what it used (`flowstore_llm_calls`),
    committed with the run, with an `llm_call` event in the log.

    Attributes:
        workflow: The run's workflow.
        node: The node that made the call.
        key: Its execution's key.
        attempt: The node's attempt that made it.
        endpoint: The endpoint's base URL (never its key).
        model: The model asked for.
        outcome: `ok`, `cached` (answered from the cache, no call made) or `failed`.
        latency_ms: From the request to the end of the reply.
        status_code: The HTTP status, when a response came.
        finish_reason: Why the model stopped (`stop`, `length`, `tool_calls`).
        prompt_tokens: Tokens of the prompt, as the endpoint reported them.
        completion_tokens: Tokens of the reply, as the endpoint reported them.
        total_tokens: Both.
        cost: From the node's price table; None without a price for the model.
        first_token_ms: From the request to the first streamed token.
        error: What went wrong, for a failed call.
    """

    workflow: str
    node: str
    key: str
    attempt: int | None
    endpoint: str
    model: str
    outcome: str
    latency_ms: float
    status_code: int | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cost: float | None = None
    first_token_ms: float | None = None
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """What the run's log keeps of it (an `llm_call` event)."""
        return {
            "model": self.model,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cost": self.cost,
            "latency_ms": round(self.latency_ms, 3),
            "error": self.error,
        }


Change = (
    RunChange
    | NodeChange
    | EventChange
    | CheckpointChange
    | ErrorChange
    | MemoryChange
    | WaitChange
    | LlmCallChange
)
"""One entry of a transition batch; each takes one sequence number."""
