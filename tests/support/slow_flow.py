"""A workflow slow enough to be interrupted from outside, for the CLI tests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowstore import Workflow

flow = Workflow("slow")
SIDE_EFFECTS = Path(os.environ.get("FLOWSTORE_TEST_SIDE_EFFECTS", "side-effects.log"))


def _record(name: str) -> None:
    with SIDE_EFFECTS.open("a") as log:
        log.write(f"{name}\n")


@flow.node
async def fast(word: str) -> str:
    _record("fast")
    return word.upper()


@flow.node
async def slow(fast: str) -> str:
    _record("slow")
    await asyncio.sleep(float(os.environ.get("FLOWSTORE_TEST_SLOW_SECONDS", "0")))
    return fast + "!"
