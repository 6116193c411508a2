"""A three-node workflow for the PostgreSQL outage test; every node execution is counted in
the file $FLOWSTORE_TEST_SIDE_EFFECTS before it does its work."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowstore import Workflow
from flowstore.runtime.context import NodeContext

flow = Workflow("outage")


def _count(ctx: NodeContext) -> None:
    with Path(os.environ["FLOWSTORE_TEST_SIDE_EFFECTS"]).open("a") as log:
        log.write(f"{ctx.run_id} {ctx.node}\n")


@flow.node
async def fetch(n: int, ctx: NodeContext) -> int:
    _count(ctx)
    return n


@flow.node
async def work(fetch: int, ctx: NodeContext) -> int:
    _count(ctx)
    await asyncio.sleep(0.3)
    return fetch * 2


@flow.node
async def store(work: int, ctx: NodeContext) -> int:
    _count(ctx)
    return work + 1
