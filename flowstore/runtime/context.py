"""What a node can know about where it runs: `RunContext` and `NodeContext`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowstore.store.records import RunId

__all__ = ["NodeContext", "RunContext"]


@dataclass(frozen=True, slots=True)
class RunContext:
    """The run a node belongs to.

    Attributes:
        run_id: The run's id.
        workflow: The workflow's name.
        inputs: The run's validated inputs.
    """

    run_id: RunId
    workflow: str
    inputs: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class NodeContext:
    """Passed to a node that declares a parameter annotated `NodeContext`.

    Attributes:
        run: The run.
        node: The node's name.
        key: Tells executions of the same node apart (a map item, a loop iteration); "" else.
        attempt: 1 for the first call, 2 for the first retry, and so on.
        run_logger: The run's logger; `logger` is its child named after the node.
    """

    run: RunContext
    node: str
    key: str
    attempt: int
    run_logger: logging.Logger

    @property
    def logger(self) -> logging.Logger:
        """A logger named after the workflow and node (made when first asked for)."""
        return self.run_logger.getChild(self.node)

    @property
    def run_id(self) -> RunId:
        """The run's id."""
        return self.run.run_id

    @property
    def inputs(self) -> Mapping[str, Any]:
        """The run's validated inputs."""
        return self.run.inputs

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of this node execution, across retries and recoveries.

        Pass it to the outside world (payments, emails, tickets) so a node that runs again
        after a crash does not do the same thing twice.
        """
        suffix = f"/{self.key}" if self.key else ""
        return f"{self.run.run_id}/{self.node}{suffix}"
