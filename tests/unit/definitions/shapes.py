"""Functions the shape workflows call, importable by path from the YAML twins."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import BaseModel


class Ticket(BaseModel):
    title: str
    body: str = ""


async def classify(ticket: str) -> str:
    return "urgent" if "down" in ticket else "normal"


async def draft(classify: str, ticket: str) -> str:
    return f"[{classify}] {ticket}"


async def review(draft: str) -> str:
    return draft.upper()


async def source(ticket: str) -> str:
    return ticket.strip()


def left(source: str) -> int:
    return len(source)


def right(source: str) -> int:
    return source.count(" ")


async def join(left: int, right: int) -> int:
    return left + right


async def page_oncall(draft: str) -> str:
    return f"paged: {draft}"


async def route(classify: str) -> str:
    return "escalate" if classify == "urgent" else "archive"


async def escalate(ticket: str) -> str:
    return f"escalated {ticket}"


async def archive(ticket: str) -> str:
    return f"archived {ticket}"


async def think(question: str) -> dict[str, object]:
    return {"question": question, "done": False}


async def act(think: dict[str, object]) -> dict[str, object]:
    return {**think, "done": True}


async def split(ticket: str) -> list[str]:
    return ticket.split()


async def shout(item: str) -> str:
    return item.upper()


async def collect(shout: list[str]) -> str:
    return " ".join(shout)


async def stream(ticket: str) -> AsyncIterator[str]:
    for word in ticket.split():
        yield word


async def summarize(child: str) -> str:
    return f"summary: {child}"


def count(classify: int) -> int:
    return classify + 1


NOT_A_FUNCTION = "just text"
