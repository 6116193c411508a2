"""Statements run straight on the SQLite driver bind and fail exactly as through SQLAlchemy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, exc, select

from flowstore.store import NewRun, RunId, StoreSettings, open_store, prepared
from flowstore.store.schema import runs, transitions
from flowstore.store.serde import encode
from flowstore.store.sqlite_threads import sqlite_sync_engine

NOW = datetime(2026, 11, 25, 12, 30, 1, 123456, tzinfo=UTC)


@pytest.fixture
async def sync_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    settings = StoreSettings(url=f"sqlite:///{tmp_path / 'prepared.db'}")
    async with await open_store(settings) as store:
        await store.create_run(NewRun("w", "1", "h", {}, id=RunId("r")))
        sync = sqlite_sync_engine(store.engine, settings, connections=1)
    yield sync
    sync.dispose()


def _log_row(seq: int, payload: object) -> dict[str, object]:
    return {
        "run_id": "r",
        "seq": seq,
        "kind": "event",
        "name": "tick",
        "node": None,
        "exec_key": "",
        "status": None,
        "attempt": None,
        "payload": payload,
        "created_at": NOW,
    }


def test_rows_written_directly_read_back_like_rows_written_by_sqlalchemy(
    sync_engine: Engine,
) -> None:
    payload = encode({"text": "é", "n": [1, 2.5, None]}, what="payload")
    with sync_engine.begin() as conn:
        assert prepared.fast_path(conn)
        prepared.execute_many(conn, transitions.insert(), [_log_row(11, payload)])
        conn.execute(transitions.insert(), [_log_row(12, payload)])
    with sync_engine.connect() as conn:
        rows = (
            conn.execute(select(transitions).where(transitions.c.seq > 10).order_by("seq"))
            .mappings()
            .all()
        )
    direct, through_sqlalchemy = ({k: v for k, v in row.items() if k != "seq"} for row in rows)
    assert direct == through_sqlalchemy
    assert direct["payload"] == {"text": "é", "n": [1, 2.5, None]}
    assert direct["created_at"] == NOW


def test_returning_gives_the_rows(sync_engine: Engine) -> None:
    statement = runs.update().values(last_seq=runs.c.last_seq + 3).returning(runs.c.last_seq)
    with sync_engine.begin() as conn:
        before = conn.execute(select(runs.c.last_seq)).scalar_one()
        assert prepared.execute(conn, statement, {}) == [(before + 3,)]


def test_a_constraint_failure_raises_sqlalchemys_integrity_error(sync_engine: Engine) -> None:
    with sync_engine.begin() as conn:
        prepared.execute_many(conn, transitions.insert(), [_log_row(11, None)])
    with (
        pytest.raises(exc.IntegrityError, match="UNIQUE constraint failed"),
        sync_engine.begin() as conn,
    ):
        prepared.execute_many(conn, transitions.insert(), [_log_row(11, None)])
    with sync_engine.connect() as conn:
        seqs = conn.execute(select(transitions.c.seq).where(transitions.c.seq > 10))
        assert seqs.scalars().all() == [11]
