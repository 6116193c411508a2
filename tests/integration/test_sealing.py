"""Secret fields sealed at rest: never in the database in clear, back in clear for the
processes that hold the key, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from flowstore import (
    Cache,
    Client,
    ConfigurationError,
    Engine,
    ExecutionConfig,
    NodeContext,
    RunStatus,
    Workflow,
    new_secrets_key,
)
from flowstore.store.engine import normalize_url
from flowstore.store.schema import metadata

API_KEY = "sk-live-4f9a2c7e"
TOKEN = "sess-77aa01b2c3"


def charging(fail_once: list[bool]) -> Workflow:
    config = ExecutionConfig(secret_fields=["api_key", "session_token"])
    flow = Workflow("charge", config=config, output="receipt", inputs={"amounts": list})

    @flow.node(cache=Cache())
    async def login(api_key: str, user: str) -> dict[str, str]:
        return {"session_token": TOKEN, "user": user}

    @flow.node(map={"over": "amounts", "item": "amount"})
    async def charge(login: dict[str, str], amount: int) -> dict[str, Any]:
        if fail_once and fail_once.pop():
            raise RuntimeError(f"gateway down for api_key={API_KEY}, session {TOKEN}")
        return {"amount": amount, "session_token": login["session_token"]}

    @flow.node
    async def receipt(
        charge: list[dict[str, Any]], api_key: str, ctx: NodeContext
    ) -> dict[str, Any]:
        return {"total": sum(c["amount"] for c in charge), "api_key": api_key}

    return flow


async def everything_stored(url: str, tmp_path: Path) -> str:
    """Every row of every flowstore table as text (and the SQLite file's raw bytes)."""
    engine = create_async_engine(normalize_url(url))
    dumped = []
    try:
        async with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in await conn.execute(table.select()):
                    dumped.append(repr(tuple(row)))
    finally:
        await engine.dispose()
    if url.startswith("sqlite"):
        dumped += _raw_files(tmp_path)
    return "\n".join(dumped)


def _raw_files(folder: Path) -> list[str]:
    """The bytes of the SQLite database files (the WAL included), as text."""
    return [file.read_bytes().decode("latin-1") for file in folder.glob("*.db*")]


INPUTS = {"api_key": API_KEY, "user": "ana", "amounts": [5, 7]}


async def test_secret_fields_never_reach_the_database_in_clear(
    migrated_url: str, tmp_path: Path
) -> None:
    key = new_secrets_key()
    flow = charging(fail_once=[True])
    async with Engine(migrated_url, workers=0, secrets_key=key) as engine:
        failed = await engine.run(flow, INPUTS)
        assert failed.status is RunStatus.FAILED
        resumed = await engine.resume(failed.id)  # reads its sealed inputs and outputs back
        assert (resumed.status, resumed.output) == (
            RunStatus.SUCCEEDED,
            {"total": 12, "api_key": API_KEY},
        )
        assert resumed.inputs == INPUTS
        again = await engine.run(flow, INPUTS)  # `login` from the (sealed) cache
        assert again.output == {"total": 12, "api_key": API_KEY}
    stored = await everything_stored(migrated_url, tmp_path)
    assert "$sealed" in stored and "ana" in stored
    assert API_KEY not in stored and TOKEN not in stored


async def test_without_a_key_the_same_run_stores_the_secrets(
    migrated_url: str, tmp_path: Path
) -> None:
    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(charging(fail_once=[]), INPUTS)
        assert run.status is RunStatus.SUCCEEDED
    stored = await everything_stored(migrated_url, tmp_path)
    assert API_KEY in stored and TOKEN in stored  # what the key prevents


async def test_a_client_with_the_key_seals_what_it_submits_and_reads_it_back(
    migrated_url: str, tmp_path: Path
) -> None:
    key = new_secrets_key()
    flow = charging(fail_once=[])
    async with Engine(migrated_url, workflows=[flow], secrets_key=key, poll_seconds=0.05):
        async with Client(migrated_url, secrets_key=key, poll_seconds=0.05) as client:
            run = await client.wait(await client.submit("charge", INPUTS))
            assert (run.status, run.inputs, run.output["api_key"]) == (
                RunStatus.SUCCEEDED,
                INPUTS,
                API_KEY,
            )
        async with Client(migrated_url) as keyless:
            sealed = await keyless.get_run(run.id)
            assert sealed.inputs["user"] == "ana"
            assert set(sealed.inputs["api_key"]) == {"$sealed"}
    assert API_KEY not in await everything_stored(migrated_url, tmp_path)


async def test_another_key_is_refused_clearly(migrated_url: str) -> None:
    flow = charging(fail_once=[True])
    async with Engine(migrated_url, workers=0, secrets_key=new_secrets_key()) as engine:
        failed = await engine.run(flow, INPUTS)
    async with Engine(migrated_url, workers=0, secrets_key=new_secrets_key()) as engine:
        with pytest.raises(ConfigurationError, match="does not open with this secrets key"):
            await engine.get_run(failed.id)


def test_a_key_that_is_not_a_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="the secrets key is not a Fernet key"):
        Engine(secrets_key="hunter2")
