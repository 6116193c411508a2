"""flowstore beside LangGraph and DBOS: the same workloads, each in a fresh process.

    .venv/bin/pip install -r benchmarks/requirements.txt   # the peers (optional)
    .venv/bin/python benchmarks/compare.py [--repeat 3] [--output table.md]

Workloads, on SQLite files made new for every run:

- W1: a chain of N no-op steps (N = 10, 100, 500);
- W2: a chain of N steps that each sleep 10 ms (N = 10, 50, 100, 500);
- W3: N steps that each sleep 10 ms, all at once, then a join (N = 10, 50, 100, 500);
- C: N runs of a chain of 10 no-op steps, started at once in one process (N = 100), shown
  in steps per second: a service running many workflows at once.

Engines: flowstore with `sync` and `batched` durability (SQLite WAL, synchronous FULL);
LangGraph, a StateGraph with AsyncSqliteSaver, with its default durability and with
`durability="sync"`; DBOS with its SQLite system database, an async workflow of async steps
(W3's steps gathered at once). A peer that is not installed is left out, and the output says
so.

Every measurement is its own process (`--child`), started fresh: it imports the engine (timed,
and the RSS after it read), builds the workload and readies the engine for it as its users
would before work arrives (flowstore: an open `Engine` with the workflow registered;
LangGraph: the graph compiled with its saver and the saver's tables made with `setup()`;
DBOS: launched), runs it once, timed, and
checks its result (a broken run cannot look fast), then reports the run's time, its peak RSS
and the bytes its database holds. The engines take turns, one process each per round, so
that a noisy spell of the machine falls on all of them. The table shows the median of
`--repeat` processes, the
target figures flowstore was specified against, and flowstore's time over each peer's (below
1: flowstore is faster).
Footprint: RSS after import, peak RSS at N = 500, memory per added step and bytes on disk per
step (the slope of W1 from N = 10 to 500), import time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import operator
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

ROOT = Path(__file__).resolve().parents[1]

SIZES = {
    "W1": (10, 100, 500),
    "W2": (10, 50, 100, 500),
    "W3": (10, 50, 100, 500),
    "C": (100,),
}
QUICK_SIZES = {"W1": (10, 50), "W2": (10,), "W3": (10, 50), "C": (10,)}
"""`--quick`: a check that every engine runs, in seconds (no figure to quote)."""
Sizes = dict[str, tuple[int, ...]]
TARGETS_MS = {
    "W2": {10: 100, 50: 500, 100: 1_000, 500: 5_000},
    "W3": {10: 30, 50: 120, 100: 200, 500: 800},
}
"""The figures flowstore was specified against (10 ms nodes, sequential and in parallel)."""
CHAIN = 10
"""The steps of each run of workload C."""
TARGET_BASE_MB = 10
TARGET_PER_NODE_KB = 100

ENGINES = {
    "flowstore-sync": "flowstore `sync`",
    "flowstore-batched": "flowstore `batched`",
    "langgraph": "LangGraph (default)",
    "langgraph-sync": 'LangGraph `durability="sync"`',
    "dbos": "DBOS",
}
NEEDS = {
    "langgraph": ("langgraph", "langgraph.checkpoint.sqlite"),
    "langgraph-sync": ("langgraph", "langgraph.checkpoint.sqlite"),
    "dbos": ("dbos",),
}


# ---------------------------------------------------------------------------- one measurement


def rss_kb() -> int:
    """The process's resident memory now."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@dataclass(frozen=True)
class Measured:
    """What one process measured: import time and the RSS after it, the run's time, its
    result (checked against N)."""

    import_s: float
    rss_import_kb: int
    took_s: float
    result: int


def imported(started: float) -> tuple[float, int]:
    return time.perf_counter() - started, rss_kb()


async def run_flowstore(workload: str, size: int, db: Path, durability: str) -> Measured:
    started = time.perf_counter()
    from flowstore import Workflow
    from flowstore.runtime.engine import Engine

    import_s, rss = imported(started)
    steps = "benchmarks.steps"
    nodes: list[dict[str, Any]]
    if workload == "W3":
        nodes = [{"name": f"f{i}", "call": f"{steps}:nap", "inputs": ["n"]} for i in range(size)]
        join = {f"f{i}": f"f{i}" for i in range(size)}
        nodes.append({"name": "join", "call": f"{steps}:gather", "inputs": join})
    else:
        first, then = ("slow_start", "slow_step") if workload == "W2" else ("start", "step")
        nodes = [{"name": "s0", "call": f"{steps}:{first}", "inputs": ["n"]}]
        nodes += [
            {"name": f"s{i}", "call": f"{steps}:{then}", "inputs": {"previous": f"s{i - 1}"}}
            for i in range(1, CHAIN if workload == "C" else size)
        ]
    flow = Workflow.load(
        {
            "name": f"{workload.lower()}_{size}",
            "inputs": {"n": "int"},
            "nodes": nodes,
            "config": {"durability": durability},
        }
    )
    flow.compile()
    # Registered before the timer, as LangGraph compiles its graph and DBOS launches first.
    async with Engine(f"sqlite+aiosqlite:///{db}", workers=0, workflows=[flow]) as engine:
        if workload == "C":
            timer = time.perf_counter()
            ran = await asyncio.gather(*(engine.run(flow, {"n": 1}) for _ in range(size)))
            took = time.perf_counter() - timer
            return Measured(import_s, rss, took, sum(run.output == CHAIN for run in ran))
        timer = time.perf_counter()
        run = await engine.run(flow, {"n": 1 if workload != "W3" else 0})
        took = time.perf_counter() - timer
    return Measured(import_s, rss, took, run.output if isinstance(run.output, int) else -1)


class Chain(TypedDict):
    """LangGraph's state for W1 and W2."""

    value: int


class Fan(TypedDict):
    """LangGraph's state for W3: each step adds its index; the join counts them."""

    done: Annotated[list[int], operator.add]
    total: int


async def run_langgraph(workload: str, size: int, db: Path, durability: str | None) -> Measured:
    started = time.perf_counter()
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, START, StateGraph

    import_s, rss = imported(started)

    builder: Any
    if workload == "W3":
        builder = StateGraph(Fan)

        def napping(index: int) -> Callable[[Fan], Coroutine[Any, Any, dict[str, Any]]]:
            async def nap(state: Fan) -> dict[str, Any]:
                await asyncio.sleep(0.01)
                return {"done": [index]}

            return nap

        async def join(state: Fan) -> dict[str, Any]:
            return {"total": len(state["done"])}

        for index in range(size):
            builder.add_node(f"f{index}", napping(index))
            builder.add_edge(START, f"f{index}")
            builder.add_edge(f"f{index}", "join")
        builder.add_node("join", join)
        builder.add_edge("join", END)
        state: dict[str, Any] = {"done": []}
    else:
        builder = StateGraph(Chain)
        sleep = workload == "W2"

        async def step(state: Chain) -> dict[str, Any]:
            if sleep:
                await asyncio.sleep(0.01)
            return {"value": state["value"] + 1}

        previous = START
        for index in range(CHAIN if workload == "C" else size):
            builder.add_node(f"s{index}", step)
            builder.add_edge(previous, f"s{index}")
            previous = f"s{index}"
        builder.add_edge(previous, END)
        state = {"value": 0}
    async with AsyncSqliteSaver.from_conn_string(str(db)) as saver:
        await saver.setup()  # its tables, made before the timer as flowstore's are
        graph = builder.compile(checkpointer=saver)
        options = {} if durability is None else {"durability": durability}

        def config(thread: str) -> Any:
            return {"configurable": {"thread_id": thread}, "recursion_limit": size + 10}

        if workload == "C":
            timer = time.perf_counter()
            finals = await asyncio.gather(
                *(graph.ainvoke(state, config(f"run-{i}"), **options) for i in range(size))
            )
            took = time.perf_counter() - timer
            return Measured(import_s, rss, took, sum(f["value"] == CHAIN for f in finals))
        timer = time.perf_counter()
        final = await graph.ainvoke(state, config("bench"), **options)
        took = time.perf_counter() - timer
    return Measured(import_s, rss, took, final["total"] if workload == "W3" else final["value"])


async def run_dbos(workload: str, size: int, db: Path) -> Measured:
    started = time.perf_counter()
    from dbos import DBOS

    import_s, rss = imported(started)
    DBOS(
        config={
            "name": "compare",
            "system_database_url": f"sqlite:///{db}",
            "run_admin_server": False,
            "log_level": "WARNING",
        }
    )
    sleep = workload == "W2"

    @DBOS.step()
    async def step(value: int) -> int:
        if sleep:
            await asyncio.sleep(0.01)
        return value + 1

    @DBOS.step()
    async def nap(index: int) -> int:
        await asyncio.sleep(0.01)
        return index

    @DBOS.workflow()
    async def chain(count: int) -> int:
        value = 0
        for _ in range(count):
            value = await step(value)
        return value

    @DBOS.workflow()
    async def fan(count: int) -> int:
        return len(await asyncio.gather(*(nap(index) for index in range(count))))

    DBOS.launch()
    try:
        timer = time.perf_counter()
        if workload == "C":
            handles = [await DBOS.start_workflow_async(chain, CHAIN) for _ in range(size)]
            results = await asyncio.gather(*(handle.get_result() for handle in handles))
            result = sum(value == CHAIN for value in results)
        else:
            handle = await DBOS.start_workflow_async(fan if workload == "W3" else chain, size)
            result = await handle.get_result()
        took = time.perf_counter() - timer
    finally:
        DBOS.destroy()
    return Measured(import_s, rss, took, result)


def child(engine: str, workload: str, size: int, db: Path) -> None:
    """One measurement, printed as a JSON line."""
    measured: Measured
    if engine.startswith("flowstore"):
        durability = engine.split("-", 1)[1]
        measured = asyncio.run(run_flowstore(workload, size, db, durability))
    elif engine.startswith("langgraph"):
        mode = "sync" if engine == "langgraph-sync" else None
        measured = asyncio.run(run_langgraph(workload, size, db, mode))
    else:
        measured = asyncio.run(run_dbos(workload, size, db))
    if measured.result != size:
        raise SystemExit(f"{engine} {workload} N={size}: result {measured.result}, not {size}")
    disk = sum(path.stat().st_size for path in (db, Path(f"{db}-wal")) if path.exists())
    print(
        json.dumps(
            {
                "import_ms": measured.import_s * 1000,
                "rss_import_kb": measured.rss_import_kb,
                "took_ms": measured.took_s * 1000,
                "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "disk_bytes": disk,
            }
        )
    )


# ---------------------------------------------------------------------------- the table


def measure(engines: list[str], workload: str, size: int, repeat: int) -> Results:
    """The medians of `repeat` fresh processes per engine, the engines taking turns (one
    process each per round), so that every engine meets the same spells of a noisy machine."""
    runs: dict[str, list[dict[str, float]]] = {engine: [] for engine in engines}
    for _ in range(repeat):
        for engine in engines:
            runs[engine].append(_one_process(engine, workload, size))
    return {
        (engine, workload, size): {
            key: statistics.median(run[key] for run in done) for key in done[0]
        }
        for engine, done in runs.items()
    }


def _one_process(engine: str, workload: str, size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                engine,
                workload,
                str(size),
                str(Path(scratch) / "bench.db"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    if done.returncode != 0:
        raise SystemExit(f"{engine} {workload} N={size} failed:\n{done.stderr[-3000:]}")
    measured: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return measured


def available() -> tuple[list[str], list[str]]:
    present, missing = [], []
    for engine in ENGINES:
        needs = NEEDS.get(engine, ())
        if all(_importable(module) for module in needs):
            present.append(engine)
        else:
            missing.append(engine)
    return present, missing


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def ratio(mine: float, theirs: float | None) -> str:
    return "" if theirs is None else f"{mine / theirs:.2f}"


Results = dict[tuple[str, str, int], dict[str, float]]


def table(results: Results, engines: list[str], sizes_of: Sizes) -> str:
    lines = []
    peers = [engine for engine in engines if not engine.startswith("flowstore")]
    heading = ["workload", "N", "target"] + [ENGINES[engine] for engine in engines]
    heading += [f"fs sync / {ENGINES[peer]}" for peer in peers]
    lines.append("| " + " | ".join(heading) + " |")
    lines.append("|" + " --- |" * len(heading))
    for workload, sizes in sizes_of.items():
        for size in sizes:
            target = TARGETS_MS.get(workload, {}).get(size)
            row = [workload, str(size), f"{target} ms" if target else ""]
            for engine in engines:
                took = results[(engine, workload, size)]["took_ms"]
                if workload == "C":
                    row.append(f"{took:,.1f} ms ({steps_per_s(size, took):,.0f} steps/s)")
                    continue
                per_step = f" ({took / size:.2f}/step)" if workload == "W1" else ""
                row.append(f"{took:,.1f} ms{per_step}")
            mine = results[("flowstore-sync", workload, size)]["took_ms"]
            for peer in peers:
                row.append(ratio(mine, results[(peer, workload, size)]["took_ms"]))
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def steps_per_s(runs: int, took_ms: float) -> float:
    """Workload C's throughput: its runs' steps over the time they all took."""
    return runs * CHAIN / (took_ms / 1000)


def footprint(results: Results, engines: list[str], sizes_of: Sizes) -> str:
    small, large = min(sizes_of["W1"]), max(sizes_of["W1"])
    widest = max(sizes_of["W3"])
    heading = [
        "engine",
        "import",
        "RSS after import",
        f"peak RSS, W1 N={large}",
        f"peak RSS, W3 N={widest}",
        "memory per added step",
        "disk per step (W1)",
    ]
    lines = ["| " + " | ".join(heading) + " |", "|" + " --- |" * len(heading)]
    for engine in engines:
        first, last = results[(engine, "W1", small)], results[(engine, "W1", large)]
        fan = results[(engine, "W3", widest)]
        per_step_kb = max(last["peak_kb"] - first["peak_kb"], 0) / (large - small)
        disk_per_step = (last["disk_bytes"] - first["disk_bytes"]) / (large - small)
        lines.append(
            "| "
            + " | ".join(
                [
                    ENGINES[engine],
                    f"{last['import_ms']:.0f} ms",
                    f"{last['rss_import_kb'] / 1024:.1f} MB",
                    f"{last['peak_kb'] / 1024:.1f} MB",
                    f"{fan['peak_kb'] / 1024:.1f} MB",
                    f"{per_step_kb:.1f} KB",
                    f"{disk_per_step:,.0f} B",
                ]
            )
            + " |"
        )
    lines.append(f"| target | | ~{TARGET_BASE_MB} MB | | | ~{TARGET_PER_NODE_KB} KB per node | |")
    return "\n".join(lines)


def goals(results: Results, engines: list[str], sizes_of: Sizes) -> str:
    said = []
    small, large = min(sizes_of["W1"]), max(sizes_of["W1"])
    widest = max(sizes_of["W3"])

    def took(engine: str, workload: str, size: int) -> float:
        return results[(engine, workload, size)]["took_ms"]

    if "langgraph-sync" in engines:
        for size in sizes_of["W1"]:
            times = took("langgraph-sync", "W1", size) / took("flowstore-sync", "W1", size)
            said.append(
                f"- W1 N={size}: flowstore `sync` is {times:.1f}x faster per step than LangGraph "
                f'`durability="sync"` (goal: 4x)'
            )
    if "langgraph" in engines:
        for engine in ("langgraph", "langgraph-sync"):
            times = took(engine, "W3", widest) / took("flowstore-sync", "W3", widest)
            said.append(
                f"- W3 N={widest}: flowstore `sync` is {times:.1f}x faster than "
                f"{ENGINES[engine]} (goal at N=500: 8x)"
            )
    slow = max(sizes_of["W2"])
    said.append(
        f"- W2 N={slow} (10 ms of sleep in each step): flowstore `sync` "
        f"{took('flowstore-sync', 'W2', slow):,.0f} ms"
        + (" (goal at N=500: at most 5,400 ms)" if slow == 500 else "")
    )
    said += many_runs(results, engines, sizes_of)
    for workload, size in (("W1", large), ("W3", widest)):
        mine = results[("flowstore-sync", workload, size)]["peak_kb"]
        for peer in (engine for engine in engines if not engine.startswith("flowstore")):
            theirs = results[(peer, workload, size)]["peak_kb"]
            verdict = "below" if mine < theirs else "NOT below"
            said.append(
                f"- peak RSS, {workload} N={size}: flowstore `sync` {mine / 1024:.1f} MB, "
                f"{verdict} {ENGINES[peer]} {theirs / 1024:.1f} MB"
            )
    first = results[("flowstore-sync", "W1", small)]["disk_bytes"]
    last = results[("flowstore-sync", "W1", large)]["disk_bytes"]
    said.append(
        f"- disk per step of W1, flowstore `sync`: {(last - first) / (large - small):,.0f} "
        "bytes (goal: at most 1,024)"
    )
    return "\n".join(said)


def many_runs(results: Results, engines: list[str], sizes_of: Sizes) -> list[str]:
    """Workload C's goals: flowstore `sync` against each peer, in steps per second."""
    many = max(sizes_of["C"])

    def per_s(engine: str) -> float:
        return steps_per_s(many, results[(engine, "C", many)]["took_ms"])

    said = []
    for engine in ("flowstore-sync", "flowstore-batched"):
        said.append(f"- C={many}: {ENGINES[engine]} {per_s(engine):,.0f} steps/s")
    for peer, goal in (("langgraph-sync", 30), ("langgraph", 30), ("dbos", 50)):
        if peer in engines:
            said.append(
                f"- C={many}: flowstore `sync` does {per_s('flowstore-sync') / per_s(peer):.1f}x "
                f"the steps/s of {ENGINES[peer]}, {per_s(peer):,.0f} (goal at C=100: {goal}x)"
            )
    return said


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the tables to this file")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes only: check that every engine runs"
    )
    parser.add_argument(
        "--workloads",
        default=",".join(SIZES),
        help="which to run (default: all); footprint and goals need all of them",
    )
    parser.add_argument("--child", nargs=4, metavar=("ENGINE", "WORKLOAD", "N", "DB"))
    args = parser.parse_args()
    # FLOWSTORE_BENCH_SMOKE=1 (the docs tests): the same code at small sizes, once.
    if os.environ.get("FLOWSTORE_BENCH_SMOKE") == "1":
        args.quick, args.repeat = True, 1
    if args.child:
        engine, workload, size, db = args.child
        child(engine, workload, int(size), Path(db))
        return
    engines, missing = available()
    chosen = args.workloads.split(",")
    if unknown := sorted(set(chosen) - set(SIZES)):
        parser.error(f"unknown workloads {', '.join(unknown)}: choose from {', '.join(SIZES)}")
    sizes_of = {
        workload: sizes
        for workload, sizes in (QUICK_SIZES if args.quick else SIZES).items()
        if workload in chosen
    }
    results: Results = {}
    for workload, sizes in sizes_of.items():
        for size in sizes:
            results.update(measure(engines, workload, size, args.repeat))
            for engine in engines:
                print(
                    f"{engine:<18} {workload} N={size:<4} "
                    f"{results[(engine, workload, size)]['took_ms']:>10,.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    import platform

    report = [
        f"Median of {args.repeat} fresh processes per cell, each on a new SQLite file; "
        f"Python {platform.python_version()}, {os.cpu_count()} cores.",
    ]
    if missing:
        report.append(
            "Not installed, so left out (`pip install -r benchmarks/requirements.txt`): "
            + ", ".join(ENGINES[engine] for engine in missing)
            + "."
        )
    report += [
        "",
        "Time of one run (flowstore / peer: below 1, flowstore is faster):",
        "",
        table(results, engines, sizes_of),
    ]
    if sizes_of.keys() == SIZES.keys():
        report += [
            "",
            "Footprint:",
            "",
            footprint(results, engines, sizes_of),
            "",
            "Goals:",
            "",
            goals(results, engines, sizes_of),
        ]
    elif "C" in sizes_of:
        report += ["", "Goals:", "", "\n".join(many_runs(results, engines, sizes_of))]
    text = "\n".join(report)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
