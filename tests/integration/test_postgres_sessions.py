"""PostgreSQL: a process frozen inside a transaction cannot hold a run's row locks forever."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text

from flowstore.errors import StoreError
from flowstore.store import NewRun, StoreSettings, WorkerId, open_store
from flowstore.store.schema import runs


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
