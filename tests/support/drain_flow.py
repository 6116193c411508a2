"""A small workflow for the worker tests; every node execution is counted in a file."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowstore import Workflow
from flowstore.runtime.context import NodeContext

flow = Workflow("drain")


def _count(ctx: NodeContext) -> None:
    path = Path(os.environ["FLOWSTORE_TEST_SIDE_EFFECTS"])
    with path.open("a") as log:
        log.write(f"{ctx.run_id} {ctx.node}\n")


@flow.node
async def double(n: int, ctx: NodeContext) -> int:
    _count(ctx)
    await asyncio.sleep(0.02)
    return n * 2


@flow.node
async def plus_one(double: int, ctx: NodeContext) -> int:
    _count(ctx)
    return double + 1
