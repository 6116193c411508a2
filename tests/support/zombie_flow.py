"""A workflow whose one node is slow in one worker and quick in another (by environment)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from flowstore import Workflow

flow = Workflow("zombie")


def _mark_started() -> None:
    # Written whole, then renamed: a test polling for the file never reads it half written.
    marker = Path(os.environ["FLOWSTORE_TEST_MARKER"])
    partial = marker.with_name(f"{marker.name}.{os.getpid()}")
    partial.write_text(str(os.getpid()))
    partial.replace(marker)


@flow.node
async def work(job: str) -> str:
    _mark_started()
    await asyncio.sleep(float(os.environ.get("FLOWSTORE_TEST_SLOW_SECONDS", "0")))
    return f"{job} done by {os.getpid()}"
