"""A workflow for the shutdown tests: `step` takes $FLOWSTORE_TEST_STEP_SECONDS, and every
node execution is counted in the file $FLOWSTORE_TEST_SIDE_EFFECTS."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowstore import Workflow
from flowstore.runtime.context import NodeContext

flow = Workflow("shutdown")


def _count(ctx: NodeContext) -> None:
    with Path(os.environ["FLOWSTORE_TEST_SIDE_EFFECTS"]).open("a") as log:
        log.write(f"{ctx.run_id} {ctx.node} {os.getpid()}\n")


@flow.node
async def step(n: int, ctx: NodeContext) -> int:
    _count(ctx)
    await asyncio.sleep(float(os.environ.get("FLOWSTORE_TEST_STEP_SECONDS", "0")))
    return n * 2


@flow.node
async def done(step: int, ctx: NodeContext) -> int:
    _count(ctx)
    return step + 1
