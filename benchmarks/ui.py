"""The web inspector with many runs: how long its pages take to come back.

    python benchmarks/ui.py [--runs 100000] [--nodes 500] [--url URL]

Fills one database (a new SQLite file by default; `--url` for PostgreSQL, whose flowstore
tables are dropped and made again) with `--runs` ended runs and one run of a chain of
`--nodes` nodes, starts `flowstore ui` on it in its own process, and times each page over
HTTP, as a browser gets it: the runs page (the first, one filtered by status, one by
workflow, the next page), the chain's page and its live part. Prints the median and slowest
of 20 requests each, after one unmeasured request.

Goal: the runs page and the chain's page each under 300 ms. Never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.concurrency import reset_database  # noqa: E402
from benchmarks.retention import seed  # noqa: E402
from flowstore import Engine, Workflow  # noqa: E402

GOAL_MS = 300.0


def chain(nodes: int) -> Workflow:
    specs = [{"name": "s0", "call": "benchmarks.steps:start", "inputs": ["n"]}]
    specs += [
        {"name": f"s{i}", "call": "benchmarks.steps:step", "inputs": {"previous": f"s{i - 1}"}}
        for i in range(1, nodes)
    ]
    return Workflow.load({"name": "long", "inputs": {"n": "int"}, "nodes": specs})


async def fill(url: str, runs: int, nodes: int) -> str:
    """`runs` ended runs and one chain of `nodes`; the chain's run id."""
    long = chain(nodes)
    async with Engine(url, workflows=[long]) as engine:
        started = time.perf_counter()
        await seed(engine, runs, at_once=200)
        print(f"{runs:,} runs stored in {time.perf_counter() - started:.1f} s", flush=True)
        return (await engine.run(long, {"n": 0})).id


def serve(url: str) -> tuple[subprocess.Popen[str], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "flowstore", "ui", "--url", url, "--port", str(port)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            httpx.get(base + "/", timeout=5)
            return server, base
        except httpx.TransportError:
            time.sleep(0.05)
    server.kill()
    raise SystemExit(f"flowstore ui did not start: {server.communicate()[1]}")


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[float, float, int]:
    """Median and slowest ms of `repeat` GETs of `path` (after one), and the page's size."""
    answer = client.get(path)
    answer.raise_for_status()
    took = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        took.append((time.perf_counter() - started) * 1000)
        answer.raise_for_status()
    return statistics.median(took), max(took), len(answer.content)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--url", help="a PostgreSQL database to use (default: a SQLite file)")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.runs, args.nodes, args.repeat = 200, 20, 2
    with tempfile.TemporaryDirectory() as scratch:
        url = args.url or f"sqlite+aiosqlite:///{Path(scratch) / 'ui.db'}"
        if args.url is not None:  # emptied of flowstore's tables, at the head revision
            asyncio.run(reset_database(url))
        long_id = asyncio.run(fill(url, args.runs, args.nodes))
        server, base = serve(url)
        try:
            with httpx.Client(base_url=base, timeout=60) as client:
                first = client.get("/").text
                older = re.search(r'class="next" href="([^"]+)"', first)
                pages = {
                    "runs page": "/",
                    "runs page, failed only": "/?status=failed",
                    "runs page, one workflow": "/?workflow=seeded",
                    "runs page, the next page": older.group(1).replace("&amp;", "&")
                    if older
                    else "/",
                    f"a run of {args.nodes} nodes": f"/runs/{long_id}",
                    f"its live part (of {args.nodes} nodes)": f"/runs/{long_id}/live",
                }
                print(f"\n{'page':<34}{'median':>10}{'slowest':>10}{'size':>10}")
                results = {}
                for name, path in pages.items():
                    median, slowest, size = timed(client, path, args.repeat)
                    results[name] = median
                    print(f"{name:<34}{median:>7.1f} ms{slowest:>7.1f} ms{size / 1024:>7.0f} kB")
        finally:
            server.terminate()
            server.communicate(timeout=30)
    print(f"\nwith {args.runs:,} runs stored (goal: under {GOAL_MS:.0f} ms):")
    print(f"- runs page: {results['runs page']:.1f} ms")
    print(f"- a run of {args.nodes} nodes: {results[f'a run of {args.nodes} nodes']:.1f} ms")


if __name__ == "__main__":
    main()
