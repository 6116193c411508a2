"""Human in the loop: a run drafts a reply, waits for a reviewer's decision (with edits), then
sends what the reviewer approved.

    flowstore worker --workflows examples.approval:flow
    flowstore submit approval --input '{"ticket": "refund for order 17"}'
    flowstore runs list --status waiting      # what each run waits for, and since when
    flowstore signal RUN decision --data '{"approved": true, "edits": "Refunded today."}'

While a run waits for its reviewer it is a row, `waiting`: it holds no worker, no lease and no
memory, for as long as the review takes, across restarts of every process. The decision is
checked by its model; the reviewer acts from the command line or from code
(`Client.signal(run_id, "decision", {...})`).
"""

from __future__ import annotations

from pydantic import BaseModel

from flowstore import NodeContext, Workflow

WEEK = 7 * 24 * 3600


class Decision(BaseModel):
    """What the reviewer decided."""

    approved: bool
    edits: str | None = None
    reviewer: str = "unknown"


flow = Workflow(
    "approval",
    version="1",
    description="Draft, wait for a reviewer, send",
    signals={"decision": Decision},  # a decision that is not a Decision is refused when sent
)


@flow.node
async def draft(ticket: str) -> str:
    """A first reply (stands for a model call)."""
    return f"About {ticket!r}: we are looking into it and will write again today."


@flow.node
async def review(draft: str, ctx: NodeContext) -> Decision:
    """Wait for the reviewer's decision. The node runs again from its start when it comes,
    so it does nothing before the wait but wait; a week without one declines."""
    decision: Decision = await ctx.wait_for_signal(
        "decision", timeout=WEEK, default=Decision(approved=False, reviewer="-")
    )
    return decision


@flow.node
async def send(draft: str, review: Decision) -> dict[str, object]:
    """Send the approved text: the reviewer's edits, else the draft."""
    if not review.approved:
        return {"sent": False, "reviewer": review.reviewer}
    return {"sent": True, "text": review.edits or draft, "reviewer": review.reviewer}
