"""Retention: old runs deleted with everything that belongs to them, in batches, on SQLite and
PostgreSQL; SQLite's space given back; and the plans of the queries that must stay fast with
many runs (claims, listings, retention's own) use indexes."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from flowstore import ConfigurationError, Engine, NodeContext, Retention, RunStatus, Workflow
from flowstore.runtime.retention import delete_old_runs
from flowstore.store import NewMessage, NewRun, RunChange, RunId, WorkerId, open_store
from flowstore.store.plans import query_plans, reads_every_run
from tests.support.cli import run_flowstore as flowstore


def chatty() -> Workflow:
    """A run that leaves rows in most tables: executions, log, a retried node's errors and
    spans, metrics, a wait and its signal, a message and an entity version."""
    flow = Workflow("chatty", output="finish")
    attempts: dict[int, int] = {}

    @flow.node(retry={"attempts": 2, "backoff": 0, "jitter": False})
    async def flaky(n: int) -> int:
        attempts[n] = attempts.get(n, 0) + 1
        if attempts[n] == 1:
            raise RuntimeError("the first attempt fails")
        return n

    @flow.node
    async def gate(flaky: int, ctx: NodeContext) -> int:
        got: int = await ctx.wait_for_signal("go", timeout=0.01, default=1)
        return flaky + got

    @flow.node
    async def finish(gate: int) -> int:
        return gate * 2

    return flow


async def _ended_runs(engine: Engine, count: int) -> list[str]:
    flow = chatty()
    ids = []
    for n in range(count):
        run = await engine.run(flow, {"n": n})
        assert run.status is RunStatus.SUCCEEDED, run.error
        ids.append(run.id)
    return ids


async def _rows(engine: Engine, run_id: str) -> dict[str, int]:
    store, rid = engine.store, RunId(run_id)
    return {
        "transitions": len(await store.read_transitions(rid)),
        "executions": len(await store.read_node_executions(rid)),
        "waits": len(await store.read_waits(rid)),
        "errors": len(await store.list_errors(run_id=rid)),
        "metrics": len(await store.list_metrics(run_id=rid)),
        "spans": len(await store.list_spans(run_id=rid)),
    }


async def test_old_runs_go_with_everything_theirs_and_nothing_else(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0, poll_seconds=0.02) as engine:
        old = await _ended_runs(engine, 30)
        store = engine.store
        before = await _rows(engine, old[0])
        assert all(before.values()), before
        await store.append_messages("t", [NewMessage("user", "kept", run_id=RunId(old[0]))])
        await store.upsert_entity("people", "ada", {"x": 1}, run_id=RunId(old[0]))
        # Runs that have not ended are never deleted, however old.
        queued = await store.create_run(NewRun("other", "1", old_hash(engine), {}))
        waiting = await store.create_run(
            NewRun("other", "1", old_hash(engine), {}, owner=WorkerId("w"))
        )
        await store.record_transitions(waiting.id, 1, [RunChange(RunStatus.WAITING)])
        cutoff = datetime.now(UTC) + timedelta(seconds=1)  # every run so far ended before
        assert await store.count_ended_runs(ended_before=cutoff, statuses=ENDED) == 30
        sweep = await delete_old_runs(store, ended_before=cutoff, first_batch=4)
        assert (sweep.deleted, sweep.batches >= 3) == (30, True)
        assert await _rows(engine, old[0]) == dict.fromkeys(before, 0)
        left = {run.id for run in await engine.list_runs()}
        assert left == {queued.id, waiting.id}
        [message] = await store.read_messages("t")
        assert (message.content, message.run_id) == ("kept", None)
        [version] = await store.entity_history("people", "ada")
        assert version.run_id is None
        assert (await delete_old_runs(store, ended_before=cutoff)).deleted == 0


def old_hash(engine: Engine) -> str:
    [graph] = engine._definitions.by_hash  # the one workflow run so far
    return graph


ENDED = [RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED]


async def test_keeping_stats_keeps_the_metrics_the_views_count(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        await _ended_runs(engine, 3)
        cutoff = datetime.now(UTC) + timedelta(seconds=1)
        sweep = await delete_old_runs(engine.store, ended_before=cutoff, keep_stats=True)
        assert sweep.deleted == 3
        assert await engine.list_runs() == []
        [stats] = await engine.store.run_stats(workflow="chatty")
        assert (stats.runs, stats.succeeded) == (3, 3)
        retries = await engine.store.list_metrics(name="node_retry")
        assert len(retries) == 3 and {m.run_id for m in retries} == {None}


async def test_only_the_statuses_asked_for_and_at_most_the_limit(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        await _ended_runs(engine, 5)
        broken = Workflow("broken")

        @broken.node
        async def fail() -> None:
            raise RuntimeError("no")

        failed = (await engine.run(broken, {})).id
        cutoff = datetime.now(UTC) + timedelta(seconds=1)
        sweep = await delete_old_runs(
            engine.store, ended_before=cutoff, statuses=[RunStatus.FAILED]
        )
        assert sweep.deleted == 1
        assert failed not in {run.id for run in await engine.list_runs()}
        assert (await delete_old_runs(engine.store, ended_before=cutoff, limit=2)).deleted == 2
        assert len(await engine.list_runs()) == 3
        with pytest.raises(ConfigurationError, match=r"only runs that ended.*\['running'\]"):
            await delete_old_runs(engine.store, ended_before=cutoff, statuses=[RunStatus.RUNNING])
    with pytest.raises(ConfigurationError, match="only runs that ended"):
        Retention(older_than=timedelta(days=1), statuses=[RunStatus.WAITING])
    with pytest.raises(ConfigurationError, match="must be positive"):
        Retention(older_than=timedelta(0))


async def test_an_engine_with_retention_deletes_old_runs_in_the_background(
    migrated_url: str,
) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        await _ended_runs(engine, 4)
    await asyncio.sleep(0.3)
    keep = Retention(older_than=timedelta(seconds=0.2), every=timedelta(seconds=0.1))
    async with Engine(migrated_url, workers=0, retention=keep) as engine:
        for _ in range(100):
            if not await engine.list_runs():
                break
            await asyncio.sleep(0.05)
        assert await engine.list_runs() == []


def _file_size(path: Path) -> int:
    return path.stat().st_size


async def test_sqlite_gives_the_space_back(tmp_path: Path) -> None:
    path = tmp_path / "space.db"
    url = f"sqlite+aiosqlite:///{path}"
    async with Engine(url, workers=0) as engine:
        flow = Workflow("bulky")

        @flow.node
        async def big(n: int) -> str:
            return "x" * 20_000

        for n in range(60):
            await engine.run(flow, {"n": n})
        use = await engine.store.space_use()
        assert use.incremental  # every file flowstore creates
        full = use.file_bytes
        sweep = await delete_old_runs(
            engine.store, ended_before=datetime.now(UTC) + timedelta(seconds=1)
        )
        after = await engine.store.space_use()
    assert sweep.pages_freed > 0
    assert after.file_bytes < full / 2 and after.free_bytes < full / 10


async def test_vacuum_shrinks_a_file_made_without_incremental_auto_vacuum(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite+aiosqlite:///{path}"
    async with Engine(url, workers=0) as engine:
        await engine.store.vacuum()  # the setting is the file's: turn it off as older files
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA auto_vacuum=NONE")
        conn.execute("VACUUM")
    async with Engine(url, workers=0) as engine:
        assert not (await engine.store.space_use()).incremental
        await _ended_runs(engine, 20)
        await delete_old_runs(engine.store, ended_before=datetime.now(UTC) + timedelta(1))
        kept = await engine.store.space_use()
        assert kept.free_bytes > 0  # not given back without incremental auto-vacuum
        await engine.store.vacuum()
        vacuumed = await engine.store.space_use()
    assert vacuumed.incremental and vacuumed.free_bytes == 0
    assert vacuumed.file_bytes < kept.file_bytes


def test_flowstore_gc_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gc.db'}"

    async def seed() -> None:
        async with Engine(url, workers=0) as engine:
            await _ended_runs(engine, 6)

    asyncio.run(seed())
    env = {**os.environ, "FLOWSTORE_DATABASE_URL": url}
    dry = json.loads(flowstore("gc", "--older-than", "0s", "--dry-run", "--json", env=env).stdout)
    assert dry["would_delete"] == 6
    done = flowstore("gc", "--older-than", "0s", "--limit", "4", env=env)
    assert "deleted 4 runs that ended before" in done.stdout
    shown: dict[str, Any] = json.loads(
        flowstore("gc", "--older-than", "0s", "--vacuum", "--json", env=env).stdout
    )
    assert (shown["deleted"], shown["free_bytes"], shown["incremental"]) == (2, 0, True)
    future = flowstore("gc", "--older-than", "2999-01-01", env=env, check=False)
    assert future.returncode != 0 and "is in the future" in future.stderr
    running = flowstore("gc", "--older-than", "1d", "--status", "running", env=env, check=False)
    assert running.returncode != 0 and "invalid choice: 'running'" in running.stderr
    vague = flowstore("gc", "--older-than", "soon", env=env, check=False)
    assert "--older-than 'soon': give an ISO 8601 time" in vague.stderr
    worker = ("worker", "--workflows", "tests.support.sleep_flow:flow")
    ahead = flowstore(*worker, "--keep-runs", "2999-01-01", env=env, check=False)
    assert "--keep-runs '2999-01-01': give an age, such as 30d" in ahead.stderr


async def test_the_queries_that_must_scale_read_no_more_than_an_index_range(
    migrated_url: str,
) -> None:
    store = await open_store(migrated_url)
    try:
        async with store.engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:  # an empty table is read whole anyway: ask what the indexes allow
                await conn.execute(text("SET enable_seqscan = off"))
                # And its statistics make a bitmap of the index, then a sort, look as cheap
                # as reading the index in order up to the limit, which a real table's do not.
                await conn.execute(text("SET enable_bitmapscan = off"))
            plans = await conn.run_sync(query_plans)
    finally:
        await store.close()
    assert len(plans) == 13
    for name, plan in plans.items():
        # The waiting runs that are due, and only those, are sorted in claim order; so are
        # the running runs with a free lease (few: one per executing run at most), and on
        # PostgreSQL the ids that start with a prefix (its index orders them byte by byte),
        # and the runs whose id starts with a prefix (as few), newest first.
        sorted_few = ("claim waiting", "claim running", "find a short id")
        sorts = name in (*sorted_few, "list runs by the start of their id")
        assert not reads_every_run(plan, sorts=sorts), f"{name}:\n{plan}"
        if name != "list runs":  # newest first, all of them: the index read in order
            assert "SEARCH" in plan or "Index Cond" in plan, f"{name}:\n{plan}"


async def test_deleting_batches_do_not_wait_for_the_disk_and_other_writes_still_do(
    sqlite_url: str,
) -> None:
    def level(conn: Any) -> int:
        return int(conn.exec_driver_sql("PRAGMA synchronous").scalar())

    store = await open_store(sqlite_url)
    try:
        assert await store._write("reading", level) == 2  # FULL: every commit is on disk
        # A batch that a power cut may undo (it is done again next time) lets go sooner.
        assert await store._write_lazily("reading", level) == 1
        assert await store._write("reading", level) == 2
        failing = store._write_lazily("failing", lambda conn: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            await failing
        assert await store._write("reading", level) == 2
    finally:
        await store.close()
