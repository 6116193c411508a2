"""A workflow for the durable-sleep crash test: `nap` sleeps durably for `seconds`."""

from __future__ import annotations

from flowstore import NodeContext, Workflow

flow = Workflow("napper", output="after")


@flow.node
async def nap(seconds: float, ctx: NodeContext) -> str:
    await ctx.sleep(seconds)
    return "rested"


@flow.node
async def after(nap: str) -> str:
    return nap.upper()
