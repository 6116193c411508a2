"""The approval example, end to end: a worker process runs it, a reviewer in other
processes sees the waiting run and decides through the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.cli import ROOT, start_worker


def flowstore(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstore", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _listed(env: dict[str, str], *args: str) -> list[dict[str, object]]:
    done = flowstore("runs", "list", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    listed: list[dict[str, object]] = json.loads(done.stdout)
    return listed


@pytest.mark.slow
async def test_a_reviewer_approves_a_waiting_run_from_another_process(
    database_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "FLOWSTORE_DATABASE_URL": database_url}
    assert flowstore("db", "upgrade", env=env).returncode == 0
    worker = await start_worker("examples.approval:flow", database_url, "--poll", "0.1", env=env)
    try:
        assert worker.stderr is not None
        await asyncio.wait_for(worker.stderr.readline(), 60)  # "worker ... running approval"
        submitted = flowstore(
            "submit", "approval", "--input", '{"ticket": "refund for order 17"}', env=env
        )
        assert submitted.returncode == 0, submitted.stderr
        run_id = submitted.stdout.strip()
        deadline = time.monotonic() + 30
        while True:
            waiting = _listed(env, "--status", "waiting")
            if waiting or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        [run] = waiting
        assert run["id"] == run_id
        assert "signal 'decision' (review, since " in str(run["waiting"])
        table = flowstore("runs", "list", "--status", "waiting", env=env).stdout
        assert "waiting for signal 'decision'" in table

        refused = flowstore(
            "signal", run_id, "decision", "--data", '{"approved": "perhaps"}', env=env
        )
        assert refused.returncode == 1
        assert "the payload is not a Decision: approved: Input should be a valid boolean" in (
            refused.stderr
        )
        assert "it was not sent" in refused.stderr
        sent = flowstore(
            "signal",
            run_id[:8],
            "decision",
            "--data",
            '{"approved": true, "edits": "Refunded today.", "reviewer": "ana"}',
            "--key",
            "review-1",
            env=env,
        )
        assert sent.returncode == 0, sent.stderr
        again = flowstore(
            "signal",
            run_id,
            "decision",
            "--data",
            '{"approved": false}',
            "--key",
            "review-1",
            env=env,
        )  # a retried click: the same key, no second decision
        assert again.returncode == 0, again.stderr
        while True:
            shown = json.loads(flowstore("runs", "show", run_id, "--json", env=env).stdout)
            if shown["run"]["status"] != "waiting" and shown["run"]["status"] != "running":
                break
            assert time.monotonic() < deadline + 30
            await asyncio.sleep(0.2)
        assert shown["run"]["status"] == "succeeded"
        assert shown["run"]["output"] == {
            "sent": True,
            "text": "Refunded today.",
            "reviewer": "ana",
        }
        late = flowstore("signal", run_id, "decision", "--data", '{"approved": true}', env=env)
        assert late.returncode == 1
        assert f"run {run_id} has ended (succeeded): it takes no signal 'decision'" in late.stderr
    finally:
        worker.terminate()
        await worker.wait()
