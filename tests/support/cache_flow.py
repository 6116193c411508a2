"""A costly node behind a cache, for tests across processes."""

from __future__ import annotations

import os
from pathlib import Path

from flowstore import Cache, Workflow

flow = Workflow("costly", output="embed")
SIDE_EFFECTS = Path(os.environ.get("FLOWSTORE_TEST_SIDE_EFFECTS", "side-effects.log"))


@flow.node(cache=Cache(ttl=3600))
def embed(text: str) -> list[float]:
    with SIDE_EFFECTS.open("a") as log:
        log.write(f"{text}\n")
    return [float(len(word)) for word in text.split()]
