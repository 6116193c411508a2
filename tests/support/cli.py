"""The `flowstore` command in a child process, as acceptance tests start it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start_flowstore(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """`python -m flowstore ARGS` from the checkout, with `env` added, its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", "flowstore", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def start_worker(
    workflow: str, url: str, *args: str, env: dict[str, str]
) -> asyncio.subprocess.Process:
    """`flowstore worker --workflows WORKFLOW --url URL ARGS` from the checkout, in `env`
    (the whole environment), its stderr piped (its stdout too, unread by most tests)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowstore",
        "worker",
        "--workflows",
        workflow,
        "--url",
        url,
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
