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


def run_flowstore(
    *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`python -m flowstore ARGS` from the checkout, with `env` added, to its end; with
    `check`, its exit status must be 0 (its stderr is in the failure)."""
    done = subprocess.run(
        [sys.executable, "-m", "flowstore", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert not check or done.returncode == 0, done.stderr
    return done


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
