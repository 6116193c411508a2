"""Support-ticket triage: the README's quickstart workflow.

    flowstore run examples.triage:flow --input '{"ticket": "checkout page is down"}'

Classifies a ticket, pulls out its keywords (a sync node, run in a worker thread), drafts a
reply, pages on-call only for urgent tickets, and summarizes. Every step is committed to the
embedded SQLite database before the next one starts, so an interrupted run resumes where it
stopped (`flowstore resume RUN examples.triage:flow`).
"""

from __future__ import annotations

import asyncio
import re

from flowstore import NodeContext, Retry, Workflow

URGENT_WORDS = {"down", "outage", "breach", "data loss", "cannot log in", "500"}
STOP_WORDS = {"the", "a", "an", "is", "are", "to", "of", "and", "on", "in", "my", "our", "it"}

flow = Workflow("triage", version="1", description="Classify, draft, page and summarize a ticket")


@flow.node
async def classify(ticket: str) -> str:
    """`urgent` when the ticket mentions an outage, else `normal`."""
    await asyncio.sleep(0.05)  # stands for a model call
    text = ticket.lower()
    return "urgent" if any(word in text for word in URGENT_WORDS) else "normal"


@flow.node
def extract(ticket: str) -> list[str]:
    """The ticket's keywords, in order."""
    words = re.findall(r"[a-z0-9']+", ticket.lower())
    return [word for word in dict.fromkeys(words) if word not in STOP_WORDS]


@flow.node(retry=Retry(attempts=3, backoff=0.5))
async def draft(classify: str, extract: list[str], ticket: str) -> str:
    """A first reply to the customer."""
    await asyncio.sleep(0.05)
    topic = ", ".join(extract[:3]) or "your request"
    if classify == "urgent":
        return f"We are on it: our on-call engineers are looking at {topic} right now."
    return f"Thanks for writing in about {topic}; we will get back to you within a day."


@flow.node(when="classify == 'urgent'")
async def page_oncall(draft: str, ticket: str, ctx: NodeContext) -> str:
    """Page the on-call engineer; the idempotency key keeps a retried page from doubling."""
    await asyncio.sleep(0.02)
    return f"paged on-call (dedupe key {ctx.idempotency_key}): {ticket}"


@flow.node(join="all_done")
async def summary(classify: str, draft: str, page_oncall: str | None = None) -> dict[str, object]:
    """What happened to the ticket."""
    return {"priority": classify, "reply": draft, "paged": page_oncall is not None}
