"""Policy state survives SIGKILL: a retry counter goes on counting, an open breaker stays open."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flowstore.runtime.engine import Engine
from flowstore.store import NodeStatus, RunId, RunStatus, TransitionKind
from tests.support.cli import start_flowstore


def _attempts(side_effects: Path) -> list[str]:
    return side_effects.read_text().split() if side_effects.exists() else []


async def test_a_retry_counter_survives_sigkill_during_the_backoff(
    migrated_url: str, tmp_path: Path, reaper: list[subprocess.Popen[str]]
) -> None:
    side_effects = tmp_path / "attempts.log"
    env = {"FLOWSTORE_DATABASE_URL": migrated_url, "FLOWSTORE_TEST_SIDE_EFFECTS": str(side_effects)}
    first = start_flowstore(
        "run", "tests.support.retry_flow:flow", "--input", '{"text": "ok"}', env=env
    )
    reaper.append(first)
    deadline = time.monotonic() + 60
    while _attempts(side_effects) != ["1", "2"]:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "attempt 2 never ran"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)  # attempt 2 failed and its retry is recorded: the backoff is 5 s
    first.send_signal(signal.SIGKILL)
    _, stderr = first.communicate()
    run_id = stderr.splitlines()[0].split()[1]

    resumed = start_flowstore("resume", run_id, "tests.support.retry_flow:flow", env=env)
    reaper.append(resumed)
    stdout, stderr = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, stderr
    assert json.loads(stdout) == "OK"
    assert _attempts(side_effects) == ["1", "2", "3"], "the count started over"

    async with Engine(migrated_url, workers=0) as engine:
        [flaky] = await engine.store.read_node_executions(RunId(run_id))
        reports = await engine.store.list_errors(run_id=RunId(run_id))
        log = await engine.store.read_transitions(RunId(run_id))
    assert (flaky.status, flaky.attempt) == (NodeStatus.SUCCEEDED, 3)
    assert [(r.attempt, r.outcome) for r in reports] == [(1, "retried"), (2, "retried")]
    statuses = [(t.status, t.attempt) for t in log if t.kind is TransitionKind.NODE]
    assert statuses == [
        ("running", 1),
        ("running", 2),
        ("recovered", 2),  # the attempt that died
        ("running", 3),
        ("succeeded", None),
    ]


async def test_an_open_breaker_stays_open_after_sigkill(
    migrated_url: str,
    tmp_path: Path,
    reaper: list[subprocess.Popen[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support import breaker_flow

    side_effects = tmp_path / "calls.log"
    env = {
        "FLOWSTORE_DATABASE_URL": migrated_url,
        "FLOWSTORE_TEST_SIDE_EFFECTS": str(side_effects),
        "FLOWSTORE_TEST_SLOW_SECONDS": "60",
    }
    first = start_flowstore(
        "run", "tests.support.breaker_flow:flow", "--input", '{"amount": 5}', env=env
    )
    reaper.append(first)
    async with Engine(migrated_url, workers=0) as engine:
        deadline = time.monotonic() + 60
        while (state := await engine.store.get_breaker("billing-api")) is None:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the breaker never opened"
            await asyncio.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.communicate()
        assert (state.state, state.failure_count) == ("open", 1)

        # A new process: the dependency is not called while the breaker is open.
        monkeypatch.setattr(breaker_flow, "SIDE_EFFECTS", side_effects)
        run = await engine.run(breaker_flow.flow, {"amount": 7})
        assert (run.status, run.output) == (RunStatus.SUCCEEDED, "deferred")
        assert _attempts(side_effects) == ["charge"], "the open breaker let a call through"
        [report] = await engine.store.list_errors(run_id=run.id)
        assert (report.error_type, report.outcome) == ("flowstore.errors.CircuitOpen", "fell_back")
