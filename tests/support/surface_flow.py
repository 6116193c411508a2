"""Workflows the command-line surface tests run: one that streams, one that fails."""

from __future__ import annotations

from collections.abc import AsyncIterator

from flowstore import Workflow

chat = Workflow("chat", output="reply")


@chat.node
async def reply(text: str) -> AsyncIterator[str]:
    for word in text.split():
        yield word + " "


broken = Workflow("broken")


@broken.node
async def explode(reason: str) -> str:
    raise RuntimeError(reason)


changed = Workflow("broken", version="2")


@changed.node
async def explode_less(reason: str) -> str:
    return reason
