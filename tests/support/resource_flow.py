"""A workflow that needs a shared resource, and the resources a command line can give it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from flowstore import Workflow

flow = Workflow("greeting", resources=["greeter"])


@flow.node
async def greet(name: str, greeter: str) -> str:
    return f"{greeter}, {name}"


@asynccontextmanager
async def _greeter() -> AsyncIterator[str]:
    yield "hello"


def resources() -> dict[str, object]:
    """Called by `--resources tests.support.resource_flow:resources`."""
    return {"greeter": _greeter()}
