"""A `flowstore worker` process for the benchmarks that measure one beside them."""

from __future__ import annotations

import asyncio
import sys


async def start_worker(
    workflow: str, url: str, *, poll: float, env: dict[str, str], concurrency: int = 4
) -> asyncio.subprocess.Process:
    """`flowstore worker --workflows WORKFLOW` on `url`, `concurrency` runs at once (4 by
    default), once it says it runs (its stderr piped: the caller reads what it logs when it
    has stopped it)."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowstore",
        "worker",
        "--workflows",
        workflow,
        "--url",
        url,
        "--concurrency",
        str(concurrency),
        "--poll",
        str(poll),
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert worker.stderr is not None
    started = (await worker.stderr.readline()).decode()
    if " running " not in started:
        worker.kill()
        await worker.wait()
        raise SystemExit(f"the worker did not start: {started}")
    return worker
