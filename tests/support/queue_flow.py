"""A workflow for the queue tests: `work` takes `seconds` for a `customer`."""

from __future__ import annotations

import asyncio

from flowstore import Workflow

flow = Workflow("queued")


@flow.node
async def work(seconds: float, customer: str) -> str:
    await asyncio.sleep(seconds)
    return customer
