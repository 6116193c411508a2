"""The `flowstore` command in a child process, as acceptance tests start it."""

from __future__ import annotations

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
