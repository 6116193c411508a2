"""A dependency that fails and trips its breaker, then a node slow enough to be killed in."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowstore import Breaker, Fallback, Workflow

flow = Workflow("tripping", output="wait")
SIDE_EFFECTS = Path(os.environ.get("FLOWSTORE_TEST_SIDE_EFFECTS", "side-effects.log"))


@flow.node(
    breaker=Breaker(name="billing-api", failure_threshold=1, reset_after=3600),
    fallback=Fallback(value="deferred"),
)
def charge(amount: int) -> str:
    with SIDE_EFFECTS.open("a") as log:
        log.write("charge\n")
    raise ConnectionError("billing-api is down")


@flow.node
async def wait(charge: str) -> str:
    await asyncio.sleep(float(os.environ.get("FLOWSTORE_TEST_SLOW_SECONDS", "0")))
    return charge
