"""A node that fails twice before it succeeds, with a long backoff to be killed in."""

from __future__ import annotations

import os
from pathlib import Path

from flowstore import Retry, Workflow
from flowstore.runtime.context import NodeContext

flow = Workflow("retrying", output="flaky")
SIDE_EFFECTS = Path(os.environ.get("FLOWSTORE_TEST_SIDE_EFFECTS", "side-effects.log"))


BACKOFF = float(os.environ.get("FLOWSTORE_TEST_BACKOFF", "5"))


@flow.node(retry=Retry(attempts=3, backoff=BACKOFF, jitter=False))
def flaky(text: str, ctx: NodeContext) -> str:
    with SIDE_EFFECTS.open("a") as log:
        log.write(f"{ctx.attempt}\n")
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt} refused")
    return text.upper()
