"""A workflow whose one node is slow in one worker and quick in another (by environment)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowstore import Workflow

flow = Workflow("zombie")


def _mark_started() -> None:
    Path(os.environ["FLOWSTORE_TEST_MARKER"]).write_text(str(os.getpid()))


@flow.node
async def work(job: str) -> str:
    _mark_started()
    await asyncio.sleep(float(os.environ.get("FLOWSTORE_TEST_SLOW_SECONDS", "0")))
    return f"{job} done by {os.getpid()}"
