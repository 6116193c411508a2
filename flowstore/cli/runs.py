"""`flowstore run`, `flowstore runs list|show` and `flowstore resume`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from flowstore.cli.db import database_url, existing_store
from flowstore.cli.definitions import add_resources_option, load_resources, load_workflow
from flowstore.store.engine import StoreSettings

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Register `run`, `runs` and `resume`."""
    url_help = "database URL (default: $FLOWSTORE_DATABASE_URL or ./flowstore.db)"
    source_help = "the workflow: module:attribute, file.py:attribute, or a YAML or JSON file"

    run = commands.add_parser("run", help="run a workflow here and print its output")
    run.add_argument("source", help=source_help)
    run.add_argument("--input", default="{}", help="the inputs as a JSON object")
    run.add_argument("--url", help=url_help)
    add_resources_option(run)
    run.add_argument(
        "--debug",
        action="store_true",
        help="debug mode: log every node's inputs, output, attempts and timings to stderr",
    )
    run.set_defaults(handler=_run)

    resume = commands.add_parser("resume", help="continue an interrupted run here")
    resume.add_argument("run_id", help="the run's id")
    resume.add_argument("source", help=source_help)
    resume.add_argument("--url", help=url_help)
    add_resources_option(resume)
    resume.set_defaults(handler=_resume)

    cancel = commands.add_parser("cancel", help="cancel a run, wherever it runs")
    cancel.add_argument("run_id", help="the run's id")
    cancel.add_argument("--url", help=url_help)
    cancel.set_defaults(handler=_cancel)

    runs = commands.add_parser("runs", help="list and inspect runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    listing = runs_commands.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--workflow", help="only runs of this workflow")
    listing.add_argument("--status", help="only runs in this status")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--url", help=url_help)
    listing.set_defaults(handler=_list)
    show = runs_commands.add_parser("show", help="a run's nodes, statuses, timings and outputs")
    show.add_argument("run_id", help="the run's id")
    show.add_argument("--url", help=url_help)
    show.add_argument(
        "--debug",
        action="store_true",
        help="also every node's full inputs and output, errors with tracebacks, and the log",
    )
    show.set_defaults(handler=_show)
    tail = runs_commands.add_parser(
        "tail", help="follow a run's events live (tokens as they come), wherever it runs"
    )
    tail.add_argument("run_id", help="the run's id")
    tail.add_argument("--after", type=int, default=0, help="start after this sequence number")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.add_argument(
        "--no-follow", action="store_true", help="print what the log holds now and stop"
    )
    tail.add_argument("--url", help=url_help)
    tail.set_defaults(handler=_tail)


_TOLD = {"retried": "retrying", "fell_back": "fallback"}


class _Progress:
    """Prints a line per node as it starts and ends, with its time; and first, once the run is
    stored (its first commit), the `first` line, if any."""

    def __init__(self, first: str | None = None) -> None:
        self._started: dict[str, float] = {}
        self._first = first

    def __call__(self, changes: Sequence[Any]) -> None:
        from flowstore.store.records import ErrorChange, EventChange, NodeChange, NodeStatus

        if self._first is not None:
            print(self._first, file=sys.stderr, flush=True)
            self._first = None
        now = time.monotonic()
        for change in changes:
            if isinstance(change, EventChange) and change.name == "cache_hit":
                print(f"  cache hit {change.node}", file=sys.stderr, flush=True)
            if isinstance(change, ErrorChange) and change.outcome in _TOLD:
                error = f"{change.error_type.rsplit('.', 1)[-1]}: {change.message}"
                told = _TOLD[change.outcome]
                print(
                    f"  {told:<9} {change.node} (attempt {change.attempt}: {error})",
                    file=sys.stderr,
                    flush=True,
                )
            if not isinstance(change, NodeChange):
                continue
            if change.status is NodeStatus.RUNNING:
                self._started[change.node] = now
                continue
            took = ""
            if change.node in self._started:
                took = f" ({(now - self._started[change.node]) * 1000:.0f} ms)"
            print(f"  {change.status.value:<9} {change.node}{took}", file=sys.stderr, flush=True)


def _open(
    url: str | None, *, debug: bool = False, resources: str | None = None, create: bool = False
) -> Any:
    """An engine on the database of `url` without workers; a missing SQLite file is an
    error unless `create` (only `flowstore run` makes a database)."""
    from flowstore.runtime.engine import Engine

    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logging.getLogger("flowstore").addHandler(handler)
        logging.getLogger("flowstore").setLevel(logging.DEBUG)
    # No claim loops: this command runs what it is told to, not other queued runs.
    settings = existing_store(url) if not create else StoreSettings(url=database_url(url))
    return Engine(settings=settings, workers=0, debug=debug, resources=load_resources(resources))


def _finish(run: Any) -> int:
    if run.status.value == "succeeded":
        print(json.dumps(run.output, indent=2, default=str))
        return 0
    error = run.error or {}
    print(
        f"flowstore: run {run.id} {run.status.value}: node {error.get('node')!r} raised "
        f"{error.get('type')}: {error.get('message')}",
        file=sys.stderr,
    )
    return 1


def _run(args: argparse.Namespace) -> int:
    from flowstore.errors import InvalidValue

    workflow = load_workflow(args.source)
    try:
        inputs = json.loads(args.input)
    except json.JSONDecodeError as error:
        raise InvalidValue(f"--input is not JSON: {error}") from None
    if not isinstance(inputs, dict):
        raise InvalidValue("--input must be a JSON object of workflow inputs")

    async def run() -> Any:
        async with _open(
            args.url, debug=args.debug, resources=args.resources, create=True
        ) as engine:
            run_id = str(uuid.uuid4())
            started = f"run {run_id} of {workflow.name!r} in {engine.url}"
            return await engine.run(workflow, inputs, run_id=run_id, observe=_Progress(started))

    return _finish(asyncio.run(run()))


def _resume(args: argparse.Namespace) -> int:
    workflow = load_workflow(args.source)

    async def resume() -> Any:
        async with _open(args.url, resources=args.resources) as engine:
            engine.register(workflow)
            return await engine.resume(args.run_id, observe=_Progress())

    return _finish(asyncio.run(resume()))


def _cancel(args: argparse.Namespace) -> int:
    async def cancel() -> Any:
        async with _open(args.url) as engine:
            return await engine.cancel(args.run_id)

    run = asyncio.run(cancel())
    if run.status.value == "cancelled":
        print(f"run {run.id} cancelled")
    elif run.status.is_terminal:
        print(f"run {run.id} had already ended: {run.status.value}")
    else:
        print(f"run {run.id}: cancellation requested; its worker stops it shortly")
    return 0


def _list(args: argparse.Namespace) -> int:
    from flowstore.store.records import RunStatus

    status = RunStatus(args.status) if args.status else None

    async def listing() -> Any:
        async with _open(args.url) as engine:
            runs = await engine.list_runs(workflow=args.workflow, status=status, limit=args.limit)
            since = datetime.now(UTC) - timedelta(seconds=_LIVE_SECONDS)
            return runs, await engine.store.list_workers(heartbeat_since=since)

    runs, live = asyncio.run(listing())
    print(f"{'run':<38}{'workflow':<20}{'status':<11}{'created':<21}took")
    for run in runs:
        took = ""
        if run.finished_at and run.started_at:
            took = f"{(run.finished_at - run.started_at).total_seconds() * 1000:.0f} ms"
        if run.status is RunStatus.QUEUED:
            took = _why_waiting(run, live)
        created = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{run.id:<38}{run.workflow:<20}{run.status.value:<11}{created:<21}{took}")
    return 0


_LIVE_SECONDS = 90.0
"""A worker whose heartbeat is older than this is not counted as live by `runs list`."""


def _why_waiting(run: Any, live: Sequence[Any]) -> str:
    """Why a queued run waits, when no live worker can take it; else nothing."""
    has = set().union(set(), *(_graphs(worker.metadata) for worker in live))
    if not has:
        return "waiting: no live worker"
    if run.graph_hash not in has:
        return f"waiting: no live worker has its definition (graph {run.graph_hash[:12]})"
    return ""


def _graphs(metadata: Any) -> set[str]:
    graphs = metadata.get("graphs") if isinstance(metadata, dict) else None
    return set(graphs) if isinstance(graphs, list) else set()


def _show(args: argparse.Namespace) -> int:
    async def details() -> Any:
        async with _open(args.url) as engine:
            run = await engine.get_run(args.run_id)
            executions = await engine.store.read_node_executions(run.id)
            if not args.debug:
                return run, executions, [], [], []
            return (
                run,
                executions,
                await engine.store.list_errors(run_id=run.id, limit=1000),
                await engine.store.read_transitions(run.id),
                await engine.store.list_spans(run_id=run.id),
            )

    run, executions, errors, log, spans = asyncio.run(details())
    print(f"run {run.id}: workflow {run.workflow!r} version {run.version!r}, {run.status.value}")
    print(f"inputs: {json.dumps(run.inputs, default=str)}")
    print(f"{'node':<24}{'status':<11}{'attempt':<9}{'took':<10}output")
    for execution in executions:
        took = ""
        if execution.finished_at and execution.started_at:
            seconds = (execution.finished_at - execution.started_at).total_seconds()
            took = f"{seconds * 1000:.0f} ms"
        shown = json.dumps(execution.output if execution.error is None else execution.error)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        name = execution.node + (f"[{execution.key}]" if execution.key else "")
        line = f"{name:<24}{execution.status.value:<11}{execution.attempt:<9}{took:<10}{shown}"
        print(line)
    if run.status.value == "succeeded":
        print(f"output: {json.dumps(run.output, default=str)}")
    elif run.error:
        error = run.error
        print(f"error: {error.get('type')}: {error.get('message')} (node {error.get('node')!r})")
    if args.debug:
        _show_debug(executions, errors, log, spans)
    return 0


def _show_debug(executions: Any, errors: Any, log: Any, spans: Any) -> None:
    """Every node's full inputs, output and attempts; errors with tracebacks; the log."""
    attempts: dict[tuple[str | None, str], list[Any]] = {}
    for span in spans:
        if span.attempt is not None:
            attempts.setdefault((span.node, span.key), []).append(span)
    for execution in executions:
        name = execution.node + (f"[{execution.key}]" if execution.key else "")
        took = "" if execution.duration_ms is None else f", {execution.duration_ms:.1f} ms"
        print(f"\n== {name}: {execution.status.value}, attempt {execution.attempt}{took}")
        print(f"input:  {json.dumps(execution.input, indent=2, default=str)}")
        if execution.error is None:
            print(f"output: {json.dumps(execution.output, indent=2, default=str)}")
        for span in sorted(attempts.get((execution.node, execution.key), []), key=_started):
            ended = span.ended_at or span.started_at
            took_ms = (ended - span.started_at).total_seconds() * 1000
            print(f"  attempt {span.attempt}: {span.status}, {took_ms:.1f} ms")
    for report in errors:
        where = f"node {report.node!r} attempt {report.attempt}" if report.node else "the run"
        print(f"\n-- {report.error_type} in {where} ({report.outcome}): {report.message}")
        if report.traceback:
            print(report.traceback.rstrip())
    print(f"\n{'seq':>5}  {'kind':<11}{'node':<24}{'status':<11}detail")
    for transition in log:
        detail = transition.name or ""
        if transition.attempt is not None:
            detail = f"{detail} attempt {transition.attempt}".strip()
        print(
            f"{transition.seq:>5}  {transition.kind.value:<11}{transition.node or '':<24}"
            f"{transition.status or '':<11}{detail}"
        )


def _started(span: Any) -> Any:
    return span.started_at


def _tail(args: argparse.Namespace) -> int:
    from flowstore.events import RunEvent, stream_event_adapter

    render = _EventLines()

    async def tail() -> RunEvent | None:
        ended = None
        async with _open(args.url) as engine:
            async for event in engine.events(
                args.run_id, after=args.after, follow=not args.no_follow
            ):
                if args.json:
                    print(stream_event_adapter.dump_json(event).decode(), flush=True)
                else:
                    render(event)
                if isinstance(event, RunEvent) and event.is_terminal:
                    ended = event
        render.close()
        return ended

    ended = asyncio.run(tail())
    return 0 if ended is None or ended.status == "succeeded" else 1


class _EventLines:
    """Prints events for a terminal: tokens run on as text, every other event on a line."""

    def __init__(self) -> None:
        self._in_text = False

    def __call__(self, event: Any) -> None:
        if event.type == "token":
            sys.stdout.write(event.text)
            sys.stdout.flush()
            self._in_text = True
            return
        self.close()
        where = ""
        if getattr(event, "node", None):
            where = f" {event.node}" + (f"[{event.key}]" if event.key else "")
        line = f"[{event.seq}] {event.type}{where}"
        if event.type in ("run", "node"):
            line += f" {event.status}"
            if event.type == "node" and event.status == "running":
                line += f" (attempt {event.attempt})"
            if event.error:
                line += f": {event.error.get('type')}: {event.error.get('message')}"
            elif event.type == "run" and event.status == "succeeded":
                line += f": {json.dumps(event.output, default=str)}"
        elif event.type == "event":
            line += f" {event.name}: {json.dumps(event.payload, default=str)}"
        print(line, flush=True)

    def close(self) -> None:
        if self._in_text:
            print(flush=True)
            self._in_text = False
