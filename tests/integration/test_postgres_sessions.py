"""PostgreSQL sessions: a process frozen inside a transaction cannot hold a run's row locks
forever, a pooled connection is checked before use only after lying idle, and a run's commit
is one statement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from flowstore.errors import StoreError
from flowstore.store import (
    EventChange,
    NewRun,
    NodeChange,
    NodeStatus,
    StoreSettings,
    WorkerId,
    open_store,
)
from flowstore.store.schema import runs
from flowstore.store.sql import SQLStore


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[SQLStore]:
    store: SQLStore = await open_store(StoreSettings(url=postgres_url, auto_upgrade=True))
    yield store
    await store.close()


async def test_a_transaction_left_idle_is_ended_by_the_server_and_its_locks_freed(
    postgres_url: str,
) -> None:
    settings = StoreSettings(url=postgres_url, auto_upgrade=True, idle_in_transaction_s=1.0)
    store = await open_store(settings)
    other = await open_store(StoreSettings(url=postgres_url))
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        async with store.engine.connect() as frozen:
            limit = (
                await frozen.execute(text("SHOW idle_in_transaction_session_timeout"))
            ).scalar()
            assert limit == "1s"
            # A process that locks the run's row, then stops answering (SIGSTOP, a swap storm).
            await frozen.execute(select(runs.c.id).where(runs.c.id == run.id).with_for_update())
            async with other.engine.connect() as conn:
                await conn.execute(text("SET lock_timeout = '200ms'"))
                with pytest.raises(Exception, match="lock timeout"):
                    await conn.execute(
                        select(runs.c.id).where(runs.c.id == run.id).with_for_update()
                    )
                await conn.rollback()
                await asyncio.sleep(2.0)  # the server ends the idle session, and its locks
                await conn.execute(text("SET lock_timeout = '5s'"))
                locked = await conn.execute(
                    select(runs.c.id).where(runs.c.id == run.id).with_for_update()
                )
                assert locked.scalar() == run.id
                await conn.rollback()
            with pytest.raises(Exception, match=r"idle-in-transaction|terminat|closed"):
                await frozen.execute(text("SELECT 1"))
        # The store it belonged to goes on: its pool hands out a fresh connection.
        assert (await store.get_run(run.id)).id == run.id
    finally:
        await store.close()
        await other.close()


def test_the_idle_limit_must_not_be_negative() -> None:
    with pytest.raises(StoreError, match="idle_in_transaction_s=-1 must be 0 or more"):
        StoreSettings(idle_in_transaction_s=-1)


async def test_a_pooled_connection_closed_while_idle_is_replaced_before_it_is_used(
    postgres_url: str,
) -> None:
    store = await open_store(StoreSettings(url=postgres_url, auto_upgrade=True, pool_size=2))
    other = await open_store(StoreSettings(url=postgres_url))
    try:
        run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
        async with store.engine.connect() as first, store.engine.connect() as second:
            pids = [
                (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
                for conn in (first, second)
            ]
        # The server ends every pooled session while nobody uses them (a restart, a proxy).
        async with other.engine.connect() as conn:
            for pid in pids:
                await conn.execute(select(func.pg_terminate_backend(pid)))
        await asyncio.sleep(1.2)

        await store.record_transitions(run.id, run.fencing, [EventChange("after")])

        assert [t.name for t in await store.read_transitions(run.id)][-1] == "after"
    finally:
        await store.close()
        await other.close()


async def test_a_connection_used_a_moment_ago_is_taken_without_a_ping(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
    pings: list[Any] = []
    dialect = store.engine.sync_engine.dialect
    real_ping = dialect.do_ping

    def ping(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", ping)
    for i in range(5):
        await store.record_transitions(run.id, run.fencing, [EventChange(f"e{i}")])
    assert pings == []  # each transaction took the connection the last one returned
    await asyncio.sleep(1.2)
    await store.record_transitions(run.id, run.fencing, [EventChange("later")])
    assert len(pings) == 1


async def test_a_commit_of_node_changes_is_one_statement_and_notifies_its_readers(
    store: SQLStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = await store.create_run(NewRun("w", "1", "h", {}, owner=WorkerId("a")))
    statements: list[str] = []
    begun: list[str] = []
    real_begin = AsyncAdapt_asyncpg_connection._start_transaction

    async def begin(self: AsyncAdapt_asyncpg_connection) -> None:
        if self.isolation_level != "autocommit":
            begun.append("BEGIN")
        await real_begin(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "_start_transaction", begin)

    def executed(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    wake = asyncio.Event()
    event.listen(store.engine.sync_engine, "before_cursor_execute", executed)
    async with store.watch(run.id, wake):
        changes = [
            NodeChange("a", NodeStatus.SUCCEEDED, output={"x": 1}),
            EventChange("token", "hi", "b", attempt=1),
            NodeChange("b", NodeStatus.RUNNING, attempt=1, input={"a": {"x": 1}}),
        ]
        result = await store.record_transitions(
            run.id, run.fencing, changes, expected_seq=run.last_seq + 1
        )
        async with asyncio.timeout(5):
            await wake.wait()
    event.remove(store.engine.sync_engine, "before_cursor_execute", executed)

    # The run row, both node rows, the three log rows and the notice: one statement, a
    # transaction of its own (no BEGIN, no COMMIT).
    assert len(statements) == 1, statements
    assert begun == []
    assert (result.first_seq, result.last_seq) == (run.last_seq + 1, run.last_seq + 3)
    log = await store.read_transitions(run.id)
    assert [(t.seq, t.node, t.name) for t in log[-3:]] == [
        (run.last_seq + 1, "a", None),
        (run.last_seq + 2, "b", "token"),
        (run.last_seq + 3, "b", None),
    ]
    nodes = {n.node: n for n in await store.read_node_executions(run.id)}
    assert (nodes["a"].status, nodes["a"].output) == (NodeStatus.SUCCEEDED, {"x": 1})
    assert (nodes["b"].status, nodes["b"].input) == (NodeStatus.RUNNING, {"a": {"x": 1}})


def test_a_pool_leaves_a_connection_for_transactions_beside_the_listening_one() -> None:
    with pytest.raises(StoreError, match="pool_size=1 with max_overflow=0 leaves PostgreSQL"):
        StoreSettings(pool_size=1)
    with pytest.raises(StoreError, match="pool_size=0, max_overflow=2: the pool needs"):
        StoreSettings(pool_size=0, max_overflow=2)
    assert StoreSettings(pool_size=1, max_overflow=1).pool_size == 1
