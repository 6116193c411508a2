"""`flowstore worker` shuts down without losing or stranding a run: SIGTERM lets nodes in
flight end within `--grace`, then releases what is left for another worker at once; a
second signal releases at once; a deleted database file stops it with an error."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from flowstore import Retry, Workflow
from flowstore.errors import ExecutionError
from flowstore.runtime.engine import Engine
from flowstore.store import RunId, RunStatus
from tests.support.cli import start_worker
from tests.support.shutdown_flow import flow

ROOT = Path(__file__).resolve().parents[2]
LEASE = 30.0  # released runs are taken over long before a lease this long could expire


def _env(effects: Path, step_seconds: float = 0) -> dict[str, str]:
    """The workers' environment: where side effects are counted, how long `step` takes."""
    return {
        **os.environ,
        "FLOWSTORE_TEST_SIDE_EFFECTS": str(effects),
        "FLOWSTORE_TEST_STEP_SECONDS": str(step_seconds),
    }


async def _worker(url: str, env: dict[str, str], *extra: str) -> Any:
    return await start_worker(
        "tests.support.shutdown_flow:flow",
        url,
        *("--lease", str(LEASE), "--poll", "0.2", *extra),
        env=env,
    )


def _effects(path: Path) -> Counter[tuple[str, str]]:
    if not path.exists():
        return Counter()
    return Counter(tuple(line.split()[:2]) for line in path.read_text().splitlines())  # type: ignore[misc]


async def _until(check: Any, seconds: float = 60) -> None:
    for _ in range(int(seconds / 0.05)):
        if check():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"not within {seconds} s")


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigterm_releases_runs_in_flight_to_another_worker_at_once(
    migrated_url: str, tmp_path: Path, reaper: list[Any]
) -> None:
    effects = tmp_path / "effects.log"
    env = _env(effects, step_seconds=3)
    async with Engine(migrated_url, workers=0) as engine:
        first = await _worker(migrated_url, env, "--concurrency", "4", "--grace", "0.5")
        reaper.append(first)
        ids = [await engine.submit(flow, {"n": n}) for n in range(4)]
        await _until(lambda: len(_effects(effects)) == 4)  # all four `step`s in flight
        second = await _worker(migrated_url, env, "--concurrency", "4")
        reaper.append(second)
        first.send_signal(signal.SIGTERM)
        _, first_err = await first.communicate()
        stopped_at, stopped_wall = time.monotonic(), datetime.now(UTC)
        assert first.returncode == 0, first_err.decode()
        async with asyncio.timeout(120):
            runs = [await engine.wait(run_id) for run_id in ids]
        finished_in = time.monotonic() - stopped_at
        taken_over = []
        for run_id in ids:
            claims = [
                t.created_at
                for t in await engine.store.read_transitions(RunId(run_id))
                if t.kind.value == "run" and t.status == "running"
            ]
            assert len(claims) == 2  # the first worker's, then the second's
            taken_over.append((claims[1] - stopped_wall).total_seconds())
        second.send_signal(signal.SIGTERM)
        await second.communicate()
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 4
    log = first_err.decode()
    assert "worker stopping" in log and log.count("released for another worker") == 4, log
    counts = _effects(effects)
    # `step` was interrupted in flight (so it ran again); `done` ran once.
    assert all(counts[(run_id, "step")] == 2 for run_id in ids), counts
    assert all(counts[(run_id, "done")] == 1 for run_id in ids), counts
    # Released, not left to expire: taken over well within the 30 s lease.
    print(
        f"released runs claimed by the other worker {max(taken_over):+.2f} s from the first's "
        f"exit at the latest (poll 0.2 s); finished {finished_in:.2f} s after it"
    )
    assert finished_in < LEASE / 2


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sigterm_lets_nodes_in_flight_end_within_the_grace(
    migrated_url: str, tmp_path: Path, reaper: list[Any]
) -> None:
    effects = tmp_path / "effects.log"
    env = _env(effects, step_seconds=1)
    async with Engine(migrated_url, workers=0) as engine:
        worker = await _worker(migrated_url, env, "--concurrency", "3", "--grace", "30")
        reaper.append(worker)
        ids = [await engine.submit(flow, {"n": n}) for n in range(3)]
        await _until(lambda: len(_effects(effects)) == 3)
        worker.send_signal(signal.SIGTERM)
        _, err = await worker.communicate()
        assert worker.returncode == 0, err.decode()
        runs = [await engine.get_run(run_id) for run_id in ids]
    assert [run.status for run in runs] == [RunStatus.SUCCEEDED] * 3
    assert set(_effects(effects).values()) == {1}  # nothing ran twice
    assert "released" not in err.decode()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_second_signal_releases_at_once(
    migrated_url: str, tmp_path: Path, reaper: list[Any]
) -> None:
    effects = tmp_path / "effects.log"
    env = _env(effects, step_seconds=60)
    async with Engine(migrated_url, workers=0) as engine:
        worker = await _worker(migrated_url, env, "--grace", "120")
        reaper.append(worker)
        run_id = await engine.submit(flow, {"n": 1})
        await _until(lambda: len(_effects(effects)) == 1)
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        worker.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):  # not the 120 s grace, nor the 60 s node
            _, err = await worker.communicate()
        assert worker.returncode == 0, err.decode()
        record = await engine.store.get_run(RunId(run_id))
    assert (record.status, record.lease_owner) == (RunStatus.RUNNING, None)


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_deleted_database_file_stops_the_worker_with_an_error(
    sqlite_url: str, tmp_path: Path, reaper: list[Any]
) -> None:
    env = _env(tmp_path / "effects.log")
    async with Engine(sqlite_url, workers=0):
        pass  # the database exists
    worker = await _worker(sqlite_url, env)
    reaper.append(worker)
    assert worker.stderr is not None
    await worker.stderr.readline()  # "worker ... running shutdown": it is up
    path = Path(sqlite_url.split("///", 1)[1])
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    async with asyncio.timeout(30):
        _, err = await worker.communicate()
    assert worker.returncode == 1
    assert f"the database file {path} was deleted" in err.decode()


async def test_read_commands_never_create_a_database(tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for command in (["runs", "list"], ["workers"], ["errors"]):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flowstore",
            *command,
            "--url",
            f"sqlite:///{missing}",
            cwd=ROOT,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await process.communicate()
        assert process.returncode == 1, command
        assert f"no database at {missing}" in err.decode()
    current = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "flowstore",
        "db",
        "current",
        "--url",
        f"sqlite:///{missing}",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await current.communicate()
    assert current.returncode == 0 and out.decode().startswith("base (no flowstore schema)")
    assert not missing.exists()


async def test_workers_lists_live_workers_and_the_runs_they_hold(
    migrated_url: str, tmp_path: Path, reaper: list[Any]
) -> None:
    effects = tmp_path / "effects.log"
    env = _env(effects, step_seconds=30)
    async with Engine(migrated_url, workers=0) as engine:
        worker = await _worker(migrated_url, env, "--grace", "0")
        reaper.append(worker)
        run_id = await engine.submit(flow, {"n": 1})
        await _until(lambda: len(_effects(effects)) == 1)
        listing = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "flowstore",
            "workers",
            "--url",
            migrated_url,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await listing.communicate()
        worker.send_signal(signal.SIGINT)  # releases its run at once (no grace)
        await worker.communicate()
    lines = out.decode().splitlines()
    assert lines[0].split() == ["worker", "host", "pid", "heartbeat", "runs"]
    [row] = [line for line in lines[1:] if f":{worker.pid}:" in line]
    assert run_id in row and str(worker.pid) in row


async def test_runs_list_says_why_a_queued_run_waits_and_resume_names_the_changes(
    tmp_path: Path, reaper: list[Any]
) -> None:
    from tests.support.cli import start_flowstore

    url = f"sqlite+aiosqlite:///{tmp_path / 'versions.db'}"
    v1 = Workflow("pricing", version="1")

    @v1.node
    async def price(n: int) -> int:
        return n

    @v1.node
    async def tax(price: int) -> int:
        return price

    v2 = Workflow("pricing", version="2")

    @v2.node(retry=Retry(attempts=2))
    async def price(n: int) -> int:  # noqa: F811
        return n

    @v2.node
    async def discount(price: int) -> int:
        return price

    async with Engine(url, workers=0) as client:
        old = await client.submit(v1, {"n": 1})
    async with Engine(url, workflows=[v2], poll_seconds=0.05) as worker:  # has only v2
        listed = start_flowstore("runs", "list", "--url", url, env={})
        out, _ = listed.communicate(timeout=60)
        with pytest.raises(ExecutionError) as refused:
            await worker.resume(old)
    [row] = [line for line in out.splitlines() if line.startswith(old)]
    assert "queued" in row
    assert "waiting: no live worker has its definition (graph " in row
    message = str(refused.value)
    assert "node 'tax' removed; node 'discount' added; node 'price': retry changed" in message
    assert "workflow field version changed" in message
