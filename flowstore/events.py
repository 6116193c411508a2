"""The events of a run, as `Engine.events` and `Engine.stream` yield them.

Every row of a run's log is one event with its sequence number (`seq`): numbers start at 1
and have no gaps, so a reader that stopped after `seq` N continues with
`engine.events(run_id, after=N)` and misses nothing and sees nothing twice, live or from the
database, in this process or another.

`StreamEvent` is a Pydantic discriminated union on `type`:

- `run`: the run's status changed (`queued`, `running`, `succeeded` with its `output`,
  `failed` with its `error`, `cancelled`);
- `node`: a node execution's status changed (`running` with its `attempt`, `succeeded` with
  its `output`, `failed`, `skipped`, `recovered`, ...);
- `token`: a piece of a node's streamed output, in order (`text`);
- `event`: anything else a run records: a node's own events (`NodeContext.emit`), and the
  engine's (`error`, `cache_hit`, `fallback`, `breaker`);
- `checkpoint`: the scheduler's state was saved (loops).

A token carries the attempt that emitted it. A node running when its process died runs again
after recovery: the tokens of the attempt that died stay in the log before its `recovered`
event, and the next attempt streams from the start.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from flowstore.errors import StreamInterrupted

__all__ = [
    "CheckpointEvent",
    "CustomEvent",
    "NodeEvent",
    "RunEvent",
    "StreamEvent",
    "StreamInterrupted",
    "TokenEvent",
    "stream_event_adapter",
]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    run_id: str
    seq: int
    at: datetime | None = None


class RunEvent(_Event):
    """The run's status changed."""

    type: Literal["run"] = "run"
    status: str
    output: Any = None
    error: Any = None

    @property
    def is_terminal(self) -> bool:
        """Whether the run ended with this event."""
        return self.status in ("succeeded", "failed", "cancelled")


class NodeEvent(_Event):
    """A node execution's status changed."""

    type: Literal["node"] = "node"
    node: str
    key: str = ""
    status: str
    attempt: int | None = None
    output: Any = None
    error: Any = None


class TokenEvent(_Event):
    """A piece of a node's streamed output."""

    type: Literal["token"] = "token"
    node: str
    key: str = ""
    attempt: int | None = None
    text: str


class CustomEvent(_Event):
    """An event a node emitted, or one of the engine's own (`error`, `cache_hit`, ...)."""

    type: Literal["event"] = "event"
    name: str
    node: str | None = None
    key: str = ""
    attempt: int | None = None
    payload: Any = None


class CheckpointEvent(_Event):
    """The scheduler's state was saved (the run resumes from here after a crash)."""

    type: Literal["checkpoint"] = "checkpoint"


StreamEvent = Annotated[
    RunEvent | NodeEvent | TokenEvent | CustomEvent | CheckpointEvent,
    Field(discriminator="type"),
]
"""One event of a run's stream."""

stream_event_adapter: TypeAdapter[StreamEvent] = TypeAdapter(StreamEvent)
"""Validates and dumps `StreamEvent`s (JSON lines, say): `stream_event_adapter.dump_json(e)`."""
