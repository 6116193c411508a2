"""Fixtures shared by every suite: per-test databases on SQLite and PostgreSQL, and a clock."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.postgres import find_bin_dir, start_cluster, stop_cluster

REQUIRE_POSTGRES = os.environ.get("FLOWSTORE_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


class FakeClock:
    """A clock the test moves by hand, so lease and TTL expiry need no sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def _unavailable(reason: str) -> None:
    if REQUIRE_POSTGRES:
        pytest.fail(f"PostgreSQL tests are required here (FLOWSTORE_REQUIRE_POSTGRES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server's `postgres` database (started here when none is given)."""
    if importlib.util.find_spec("asyncpg") is None:
        _unavailable("asyncpg is not installed (pip install 'flowstore[postgres]')")
    given = os.environ.get("FLOWSTORE_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    if find_bin_dir() is None:
        _unavailable("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    # Not in a pytest folder: pytest deletes old ones while another session's server runs.
    directory = Path(tempfile.mkdtemp(prefix="flowstore-postgres-"))
    try:
        url = start_cluster(directory / "cluster")
    except Exception as error:  # a failed start is a failure, never a silent skip
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"could not start a throwaway PostgreSQL cluster: {error}")
    yield url
    stop_cluster(directory / "cluster")
    shutil.rmtree(directory, ignore_errors=True)


async def _admin(server_url: str, statement: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    dsn = server_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url(postgres_server: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    name = f"flowstore_test_{uuid.uuid4().hex[:12]}"
    await _admin(postgres_server, f'CREATE DATABASE "{name}"')
    yield postgres_server.rsplit("/", 1)[0] + f"/{name}"
    await _admin(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite file for one test."""
    return f"sqlite+aiosqlite:///{tmp_path / 'flowstore.db'}"


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """An empty database on each backend in turn."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def clock() -> FakeClock:
    """A hand-moved clock for stores opened by the test."""
    return FakeClock()


@pytest.fixture
async def migrated_url(database_url: str) -> str:
    """An empty database on each backend, at the current schema revision."""
    from flowstore.store import StoreSettings
    from flowstore.store.engine import create_engine
    from flowstore.store.migrate import upgrade

    engine = create_engine(StoreSettings(url=database_url))
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return database_url


@pytest.fixture
def reaper() -> Iterator[list[Any]]:
    """Processes a test starts; any still running when it ends (pass or fail) are killed."""
    processes: list[Any] = []
    yield processes
    for process in processes:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a stopped process cannot die otherwise
                process.kill()
