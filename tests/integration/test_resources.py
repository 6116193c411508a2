"""Shared resources opened with the engine and given to nodes; the store's pool settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from flowstore import Workflow
from flowstore.errors import ConfigurationError, DefinitionError
from flowstore.runtime.engine import Engine
from flowstore.store import RunStatus, StoreSettings


class Client:
    """Stands for an HTTP client: opened once, closed once, used by many nodes."""

    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.calls = 0

    async def __aenter__(self) -> Client:
        self.log.append("opened")
        return self

    async def __aexit__(self, *_: object) -> None:
        self.log.append("closed")

    async def get(self, path: str) -> str:
        self.calls += 1
        return f"GET {path}"


def fetching() -> Workflow:
    flow = Workflow("fetching", resources=["http", "settings"], output="summary")

    @flow.node
    async def page(path: str, http: Client) -> str:
        return await http.get(path)

    @flow.node
    async def summary(page: str, settings: dict[str, Any]) -> str:
        return f"{page} as {settings['user']}"

    return flow


async def test_a_resource_is_opened_with_the_engine_shared_and_closed(migrated_url: str) -> None:
    log: list[str] = []
    client = Client(log)

    async def load_settings() -> dict[str, Any]:
        return {"user": "ana"}

    engine = Engine(migrated_url, workers=0, resources={"http": client, "settings": load_settings})
    assert log == []
    async with engine:
        assert log == ["opened"] and engine.resources["http"] is client
        first = await engine.run(fetching(), {"path": "/a"})
        second = await engine.run(fetching(), {"path": "/b"})
        assert (first.status, first.output) == (RunStatus.SUCCEEDED, "GET /a as ana")
        assert second.output == "GET /b as ana" and client.calls == 2
        # A resource is never stored: the node's recorded input is its data only.
        [page] = [e for e in await engine.store.read_node_executions(first.id) if e.node == "page"]
        assert page.input == {"path": "/a"}
    assert log == ["opened", "closed"]


async def test_resources_come_from_factories_and_close_in_reverse_order(
    migrated_url: str,
) -> None:
    log: list[str] = []

    @asynccontextmanager
    async def pool(name: str) -> AsyncIterator[str]:
        log.append(f"open {name}")
        yield name
        log.append(f"close {name}")

    resources = {"first": lambda: pool("first"), "second": pool("second")}
    async with Engine(migrated_url, workers=0, resources=resources) as engine:
        assert engine.resources == {"first": "first", "second": "second"}
    assert log == ["open first", "open second", "close second", "close first"]


async def test_a_resource_the_engine_lacks_fails_the_node_clearly(migrated_url: str) -> None:
    async with Engine(migrated_url, workers=0, resources={"http": Client([])}) as engine:
        run = await engine.run(fetching(), {"path": "/a"})
    assert run.status is RunStatus.FAILED and run.error is not None
    assert run.error["message"] == (
        "node 'summary' needs the resource 'settings', which this engine does not provide: "
        "give it as Engine(resources={'settings': ...}), or `--resources module:mapping` to "
        "the flowstore command"
    )
    assert run.error["type"] == "flowstore.errors.ConfigurationError"


def test_resources_are_declared_in_the_dsl_and_checked() -> None:
    flow = Workflow.load(
        {
            "name": "declared",
            "resources": ["http"],
            "inputs": {"path": "str"},
            "nodes": [
                {
                    "name": "page",
                    "call": f"{__name__}:fetch_with",
                    "inputs": {"path": "path", "client": "http"},
                }
            ],
        }
    )
    assert flow.compile().resources == frozenset({"http"})
    clash = Workflow.load(
        {
            "name": "clash",
            "resources": ["path"],
            "inputs": {"path": "str"},
            "nodes": [{"name": "page", "call": f"{__name__}:fetch_with", "inputs": ["path"]}],
        }
    )
    with pytest.raises(DefinitionError, match="resource 'path' has the name of a workflow input"):
        clash.compile()


async def fetch_with(path: str, client: Any = None) -> str:
    return path


async def test_the_store_pool_is_configured_from_the_engine(database_url: str) -> None:
    settings = StoreSettings(url=database_url, pool_size=2, max_overflow=1, auto_upgrade=True)
    async with Engine("sqlite:///ignored.db", workers=0, settings=settings) as engine:
        assert engine.url == database_url
        if engine.store.dialect == "postgresql":
            pool = engine.store.engine.pool
            assert (pool.size(), pool._max_overflow) == (2, 1)
        run = await engine.run(fetching(), {"path": "/"})
        assert run.status is RunStatus.FAILED  # no resources given: a clear node failure


async def test_a_resource_taken_as_an_input_says_to_declare_it(sqlite_url: str) -> None:
    flow = Workflow("undeclared")  # `resources=["http"]` forgotten

    @flow.node
    async def page(path: str, http: Client) -> str:
        return await http.get(path)

    async with Engine(sqlite_url, workers=0, resources={"http": Client([])}) as engine:
        with pytest.raises(
            ConfigurationError,
            match=r"workflow 'undeclared' takes 'http' as workflow inputs, but this engine "
            r"provides resources of those names: declare them with "
            r"Workflow\('undeclared', resources=\['http'\]\)",
        ):
            await engine.run(flow, {"path": "/"})
        assert await engine.list_runs() == []
