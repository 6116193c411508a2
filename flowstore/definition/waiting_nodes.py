"""The built-in node types that wait, for DSL workflows: `sleep` and `signal`.

```yaml
- name: cool_off
  type: sleep
  config: {seconds: 3600}
- name: approval
  type: signal
  config: {name: approval, timeout: 86400, default: {approved: false}}
  after: [cool_off]
```

Each is a node whose whole body is one durable wait (`NodeContext.sleep`,
`NodeContext.wait_for_signal`), so nothing before the wait runs twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from flowstore.definition.node_types import node_type

__all__ = ["Sleep", "WaitForSignal"]


class NodeContext(Protocol):
    """What these nodes use of the runtime's `NodeContext` (recognised by its name: the
    definition layer does not import the runtime)."""

    async def sleep(self, seconds: float) -> None: ...

    async def wait_for_signal(
        self,
        name: str,
        *,
        timeout: float | None = None,  # noqa: ASYNC109  (a durable deadline)
        default: Any = ...,
    ) -> Any: ...


@node_type("sleep")
class Sleep:
    """Wait `seconds`, durably; the node's output is None."""

    class Config(BaseModel):
        """How long to wait."""

        model_config = ConfigDict(extra="forbid")
        seconds: float = Field(gt=0, le=366 * 24 * 3600)

    def build(self, config: Config) -> Callable[..., Any]:
        async def sleep(ctx: NodeContext) -> None:
            await ctx.sleep(config.seconds)

        return sleep


@node_type("signal")
class WaitForSignal:
    """Wait for the signal `name`, durably; the node's output is its payload (or `default`
    after `timeout` seconds; without a default, the node fails then)."""

    class Config(BaseModel):
        """The signal, and how long to wait for it."""

        model_config = ConfigDict(extra="forbid")
        name: str = Field(min_length=1, max_length=200)
        timeout: float | None = Field(default=None, gt=0, le=366 * 24 * 3600)
        default: JsonValue = None

    def build(self, config: Config) -> Callable[..., Any]:
        options: dict[str, Any] = {"timeout": config.timeout}
        if "default" in config.model_fields_set:
            options["default"] = config.default

        async def wait(ctx: NodeContext) -> Any:
            return await ctx.wait_for_signal(config.name, **options)

        return wait
