"""Waiting, in a test, for a run to reach a status."""

from __future__ import annotations

import asyncio

from flowstore import Engine, RunStatus


async def until_status(engine: Engine, run_id: str, status: RunStatus, seconds: float = 20) -> None:
    """Return once the run is `status`; fail the test after `seconds`."""
    for _ in range(int(seconds / 0.05)):
        if (await engine.get_run(run_id)).status is status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"run {run_id} never became {status.value}")
