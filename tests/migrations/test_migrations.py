"""The Alembic revisions reproduce `flowstore.store.schema` exactly, on both backends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, MetaData, String, Table, inspect, update
from sqlalchemy.engine import Connection

from flowstore.errors import SchemaError
from flowstore.store import StoreSettings, migrate, open_store
from flowstore.store.engine import create_engine
from flowstore.store.schema import POSTGRESQL_ONLY_INDEXES, PREFIX, VERSION_TABLE, metadata

ROOT = Path(__file__).resolve().parents[2]


def _include(obj: object, name: str | None, type_: str, reflected: bool, other: object) -> bool:
    if type_ == "index":
        return name not in POSTGRESQL_ONLY_INDEXES  # compared by `_dialect_indexes`
    return type_ != "table" or bool(name and name.startswith(PREFIX) and name != VERSION_TABLE)


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_object": _include,
            "version_table": VERSION_TABLE,
        },
    )
    return list(compare_metadata(context, metadata)) + _dialect_indexes(connection)


def _dialect_indexes(connection: Connection) -> list[Any]:
    """The indexes made for PostgreSQL alone that are missing, or there on SQLite."""
    postgres = connection.dialect.name == "postgresql"
    found = {
        index["name"]
        for table in _flowstore_tables(connection) - {VERSION_TABLE}
        for index in inspect(connection).get_indexes(table)
    }
    wanted = POSTGRESQL_ONLY_INDEXES if postgres else frozenset()
    return [("index", name, "missing") for name in wanted - found] + [
        ("index", name, "not wanted") for name in (POSTGRESQL_ONLY_INDEXES - wanted) & found
    ]


def _flowstore_tables(connection: Connection) -> set[str]:
    return {name for name in inspect(connection).get_table_names() if name.startswith(PREFIX)}


async def test_upgrade_head_yields_exactly_the_metadata_and_round_trips(database_url: str) -> None:
    engine = create_engine(StoreSettings(url=database_url))
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            expected = {table.name for table in metadata.sorted_tables} | {VERSION_TABLE}
            assert await conn.run_sync(_flowstore_tables) == expected
        assert (await migrate.schema_status(engine)).up_to_date

        await migrate.downgrade(engine, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_flowstore_tables) <= {VERSION_TABLE}
        assert (await migrate.schema_status(engine)).current is None

        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()


async def test_a_postgresql_database_behind_is_refused_with_the_command_to_run(
    postgres_url: str,
) -> None:
    with pytest.raises(SchemaError, match=r"no flowstore schema.*run `flowstore db upgrade --url"):
        await open_store(postgres_url)

    engine = create_engine(StoreSettings(url=postgres_url))
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    store = await open_store(postgres_url)
    await store.close()


async def test_an_embedded_sqlite_database_upgrades_itself(sqlite_url: str) -> None:
    store = await open_store(sqlite_url)
    try:
        assert (await migrate.schema_status(store.engine)).up_to_date
    finally:
        await store.close()
    with pytest.raises(SchemaError, match="run `flowstore db upgrade"):
        await open_store(StoreSettings(url=sqlite_url.replace(".db", "-2.db"), auto_upgrade=False))


async def test_a_schema_from_a_newer_flowstore_is_refused(sqlite_url: str) -> None:
    engine = create_engine(StoreSettings(url=sqlite_url))
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.run_sync(_stamp, "ffff")
    finally:
        await engine.dispose()
    with pytest.raises(
        SchemaError, match="revision ffff, which this version of flowstore does not know"
    ):
        await open_store(sqlite_url)


def _stamp(connection: Connection, revision: str) -> None:
    version = Table(VERSION_TABLE, MetaData(), Column("version_num", String(32)))
    connection.execute(update(version).values(version_num=revision))


def test_alembic_upgrade_head_works_from_a_checkout(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'checkout.db'}"
    alembic = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "-x", f"url={url}"]
    subprocess.run([*alembic, "upgrade", "head"], check=True, cwd=tmp_path, capture_output=True)
    current = subprocess.run(
        [*alembic, "current"], check=True, cwd=tmp_path, capture_output=True, text=True
    )
    assert migrate.head_revision() in current.stdout


def test_the_head_revision_constant_is_the_revisions_head() -> None:
    assert migrate.head_revision() == migrate.HEAD_REVISION


async def test_a_schema_created_from_scratch_equals_the_migrated_one(database_url: str) -> None:
    store = await open_store(StoreSettings(url=database_url, auto_upgrade=True))
    try:
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            expected = {table.name for table in metadata.sorted_tables} | {VERSION_TABLE}
            assert await conn.run_sync(_flowstore_tables) == expected
            views = await conn.run_sync(lambda sync: set(inspect(sync).get_view_names()))
            assert views >= {"flowstore_node_stats", "flowstore_run_stats", "flowstore_trace"}
        assert (await migrate.schema_status(store.engine)).up_to_date
        # Alembic takes it from there: all the way down and up again.
        await migrate.downgrade(store.engine, "base")
        await migrate.upgrade(store.engine)
        async with store.engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await store.close()


def test_opening_a_store_needs_no_alembic_unless_it_upgrades(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from flowstore.store import open_store\n"
        "async def main():\n"
        f"    for _ in range(2):\n"
        f"        store = await open_store('sqlite+aiosqlite:///{tmp_path / 'new.db'}')\n"
        "        await store.close()\n"
        "asyncio.run(main())\n"
        "print('alembic' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=True, cwd=ROOT, capture_output=True, text=True
    )
    assert done.stdout.strip() == "False"


async def _row_counts(engine: Any, tables: list[str]) -> dict[str, int]:
    from sqlalchemy import func, select

    async with engine.connect() as conn:
        return {
            name: (
                await conn.execute(select(func.count()).select_from(metadata.tables[name]))
            ).scalar_one()
            for name in tables
        }


async def test_the_waiting_revision_keeps_every_row_both_ways(migrated_url: str) -> None:
    """0005 rebuilds flowstore_runs and flowstore_node_executions on SQLite (to change their
    CHECK constraints): every row of every table survives it, up and down, and foreign keys
    are enforced again afterwards."""
    from sqlalchemy import delete, insert, select

    from flowstore import Engine, Retry, Workflow

    child = Workflow("child")

    @child.node
    async def double(n: int) -> int:
        return n * 2

    parent = Workflow("parent")
    failures: list[int] = []

    @parent.node(retry=Retry(attempts=2, backoff=0, jitter=False))
    async def first(n: int) -> int:
        if not failures:
            failures.append(n)
            raise ConnectionError("once")
        return n

    parent.subworkflow("twice", child, inputs={"n": "first"})

    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(parent, {"n": 4})
        assert run.output == 8
    before_tables = [
        t.name
        for t in metadata.sorted_tables
        if t.name
        not in {
            f"{PREFIX}{name}"
            for name in ("waits", "signals", "queues", "schedules", "schedule_ticks", "llm_calls")
        }
    ]
    sql_engine = create_engine(StoreSettings(url=migrated_url))
    try:
        before = await _row_counts(sql_engine, before_tables)
        assert before[f"{PREFIX}runs"] == 2 and before[f"{PREFIX}node_executions"] == 3
        assert before[f"{PREFIX}transitions"] > 4 and before[f"{PREFIX}error_reports"] == 1
        await migrate.downgrade(sql_engine, "0004")
        assert await _row_counts(sql_engine, before_tables) == before
        await migrate.upgrade(sql_engine)
        assert await _row_counts(sql_engine, before_tables) == before
        runs = metadata.tables[f"{PREFIX}runs"]
        executions = metadata.tables[f"{PREFIX}node_executions"]
        async with sql_engine.connect() as conn:
            child_run = (
                await conn.execute(
                    select(runs.c.id, runs.c.parent_run_id).where(runs.c.workflow == "child")
                )
            ).one()
            assert child_run.parent_run_id == run.id
    finally:
        await sql_engine.dispose()
    # Enforced again, in a new connection as in the old: a row pointing nowhere is refused,
    # and deleting a run deletes what belongs to it.
    sql_engine = create_engine(StoreSettings(url=migrated_url))
    try:
        async with sql_engine.begin() as conn:
            with pytest.raises(Exception, match=r"(?i)foreign key"):
                async with conn.begin_nested():
                    await conn.execute(
                        insert(executions).values(
                            run_id="no-such-run",
                            node="x",
                            exec_key="",
                            status="running",
                            attempt=1,
                            created_at=run.created_at,
                            updated_seq=1,
                        )
                    )
            await conn.execute(delete(runs).where(runs.c.id == child_run.id))
            left = (
                await conn.execute(
                    select(executions.c.node).where(executions.c.run_id == child_run.id)
                )
            ).all()
            assert left == []
    finally:
        await sql_engine.dispose()
