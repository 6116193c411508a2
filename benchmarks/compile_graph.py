"""Compiling generated workflows of 1,000 to 100,000 nodes: time and memory per node.

    python benchmarks/compile_graph.py [--sizes 1000 10000 100000] [--repeat 3]

Each workflow is a dict in the DSL's form, the way a YAML or JSON file arrives: a long chain
in which every tenth node also joins a node ten steps back (fan-in), with a condition on every
hundredth node. Timed: validation into the spec plus compilation into the graph (callables
resolved, edges, topological order, conditions, types, hash). Memory: the peak traced while
compiling, and what the finished graph keeps, per node. Goals on the reference machine:
10,000 nodes in under 1 s, under 2 KB per node. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowstore.definition.compiler import compile_spec
from flowstore.definition.spec import validate_spec

STEPS = "benchmarks.steps"


def generated(size: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"name": "n0", "call": f"{STEPS}:start", "inputs": ["n"]}]
    for index in range(1, size):
        if index % 10 == 0 and index >= 10:
            node: dict[str, Any] = {
                "name": f"n{index}",
                "call": f"{STEPS}:merge",
                "inputs": {"left": f"n{index - 1}", "right": f"n{index - 10}"},
            }
        else:
            node = {
                "name": f"n{index}",
                "call": f"{STEPS}:step",
                "inputs": {"previous": f"n{index - 1}"},
            }
        if index % 100 == 0:
            node["when"] = f"n{index - 1} >= 0"
        nodes.append(node)
    return {"name": f"generated_{size}", "inputs": {"n": "int"}, "nodes": nodes}


def compile_once(document: dict[str, Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    graph = compile_spec(validate_spec(document))
    return time.perf_counter() - started, graph


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.sizes, args.repeat = [1000], 1

    print(f"{'nodes':>8}{'compile':>12}{'per node':>12}{'peak/node':>12}{'kept/node':>12}")
    for size in args.sizes:
        document = generated(size)
        compile_once(generated(10))  # imports and first-use caches out of the timing
        seconds = statistics.median(compile_once(document)[0] for _ in range(args.repeat))
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        _, graph = compile_once(document)
        kept, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(graph.nodes) == size and graph.order[0] == "n0"
        print(
            f"{size:>8,}{seconds * 1000:>10.0f}ms{seconds / size * 1e6:>10.1f}us"
            f"{(peak - before) / size:>10.0f} B{(kept - before) / size:>10.0f} B"
        )
    print("goals: 10,000 nodes in under 1 s; under 2 KB per node")


if __name__ == "__main__":
    main()
