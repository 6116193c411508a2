"""`flowstore runs list|show|tail`: runs as stored, read through a `Client` (no worker)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from flowstore.cli.common import (
    add_json_option,
    add_url_option,
    open_client,
    print_json,
    record_fields,
    run_id_argument,
)
from flowstore.cli.running import add_fork_command
from flowstore.store.records import RunStatus

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Register `runs`."""
    runs = commands.add_parser("runs", help="list and inspect runs")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")
    listing = runs_commands.add_parser("list", help="recent runs, newest first")
    listing.add_argument("--workflow", help="only runs of this workflow")
    listing.add_argument(
        "--status", choices=[status.value for status in RunStatus], help="only runs in this status"
    )
    listing.add_argument("--limit", type=int, default=20, help="at most this many runs")
    add_url_option(listing)
    add_json_option(listing)
    listing.set_defaults(handler=_list)

    show = runs_commands.add_parser("show", help="a run's nodes, statuses, timings and outputs")
    run_id_argument(show)
    add_url_option(show)
    add_json_option(show)
    show.add_argument(
        "--debug",
        action="store_true",
        help="also every node's full inputs and output, errors with tracebacks, and the log",
    )
    show.add_argument(
        "--at",
        type=int,
        metavar="SEQ",
        help="the run as it was at this sequence number of its log (`runs tail` shows them)",
    )
    show.set_defaults(handler=_show)
    add_fork_command(runs_commands)

    tail = runs_commands.add_parser(
        "tail", help="follow a run's events live (tokens as they come), wherever it runs"
    )
    run_id_argument(tail)
    tail.add_argument("--after", type=int, default=0, help="start after this sequence number")
    tail.add_argument("--json", action="store_true", help="one JSON object per event")
    tail.add_argument(
        "--no-follow", action="store_true", help="print what the log holds now and stop"
    )
    add_url_option(tail)
    tail.set_defaults(handler=_tail)


def _list(args: argparse.Namespace) -> int:
    from flowstore.runtime.submission import live_definitions

    async def listing() -> Any:
        async with open_client(args.url) as client:
            status = RunStatus(args.status) if args.status else None
            runs = await client.list_runs(workflow=args.workflow, status=status, limit=args.limit)
            waits = {
                run.id: await client.store.read_waits(run.id)
                for run in runs
                if run.status is RunStatus.WAITING
            }
            return runs, await live_definitions(client.store), waits

    runs, claimed, waits = asyncio.run(listing())
    if args.json:
        print_json(
            [
                {
                    **run.model_dump(mode="json"),
                    "waiting": _why_waiting(run, claimed) or _waiting_for(waits.get(run.id)),
                }
                for run in runs
            ]
        )
        return 0
    print(f"{'run':<38}{'workflow':<20}{'status':<11}{'created':<21}took")
    for run in runs:
        took = ""
        if run.finished_at and run.started_at:
            took = f"{(run.finished_at - run.started_at).total_seconds() * 1000:.0f} ms"
        if run.status is RunStatus.QUEUED:
            why = _why_waiting(run, claimed)
            if why is None and run.queue is not None:
                key = f", key {run.queue_key}" if run.queue_key else ""
                why = f"its turn in queue {run.queue}{key}"
            took = f"waiting: {why}" if why else ""
        elif run.status is RunStatus.WAITING:
            took = f"waiting for {_waiting_for(waits.get(run.id))}"
        created = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        print(f"{run.id:<38}{run.workflow:<20}{run.status.value:<11}{created:<21}{took}")
    return 0


def _why_waiting(run: Any, claimed: set[str]) -> str | None:
    """Why a queued run waits, when no live worker can take it; else None."""
    if run.status is not RunStatus.QUEUED or run.graph_hash in claimed:
        return None
    if not claimed:
        return "no live worker"
    return f"no live worker has its definition (graph {run.graph_hash[:12]})"


def _waiting_for(waits: Any) -> str | None:
    """What a waiting run waits for, and since when: its open waits."""
    if not waits:
        return None
    parts = []
    for wait in waits:
        if wait.outcome is not None:
            continue
        since = wait.started_at.strftime("%Y-%m-%d %H:%M:%S")
        if wait.kind == "sleep":
            until = wait.wake_at.strftime("%Y-%m-%d %H:%M:%S") if wait.wake_at else "?"
            parts.append(f"a time: {until} ({wait.node}, since {since})")
        else:
            timeout = f", until {wait.wake_at:%Y-%m-%d %H:%M:%S}" if wait.wake_at else ""
            parts.append(f"signal {wait.name!r} ({wait.node}, since {since}{timeout})")
    return "; ".join(parts) or None


def _show(args: argparse.Namespace) -> int:
    if args.at is not None:
        return _show_at(args)

    async def details() -> Any:
        async with open_client(args.url) as client:
            run = await client.get_run(await client.expand_run_id(args.run_id))
            executions = await client.store.read_node_executions(run.id)
            if not args.debug:
                return run, executions, [], [], []
            return (
                run,
                executions,
                await client.store.list_errors(run_id=run.id, limit=1000),
                await client.store.read_transitions(run.id),
                await client.store.list_spans(run_id=run.id),
            )

    run, executions, errors, log, spans = asyncio.run(details())
    if args.json:
        shown: dict[str, Any] = {
            "run": run.model_dump(mode="json"),
            "nodes": [_execution(execution) for execution in executions],
        }
        if args.debug:
            shown["errors"] = [record_fields(report) for report in errors]
            shown["log"] = [record_fields(transition) for transition in log]
        print_json(shown)
        return 0
    print(f"run {run.id}: workflow {run.workflow!r} version {run.version!r}, {run.status.value}")
    print(f"inputs: {json.dumps(run.inputs, default=str)}")
    print(f"{'node':<24}{'status':<11}{'attempt':<9}{'took':<10}output")
    for execution in executions:
        took = ""
        if execution.finished_at and execution.started_at:
            seconds = (execution.finished_at - execution.started_at).total_seconds()
            took = f"{seconds * 1000:.0f} ms"
        value = json.dumps(execution.output if execution.error is None else execution.error)
        value = value if len(value) <= 60 else value[:57] + "..."
        name = execution.node + (f"[{execution.key}]" if execution.key else "")
        print(f"{name:<24}{execution.status.value:<11}{execution.attempt:<9}{took:<10}{value}")
    if run.status.value == "succeeded":
        print(f"output: {json.dumps(run.output, default=str)}")
    elif run.error:
        error = run.error
        print(f"error: {error.get('type')}: {error.get('message')} (node {error.get('node')!r})")
    if args.debug:
        _show_debug(executions, errors, log, spans)
    return 0


def _show_at(args: argparse.Namespace) -> int:
    async def read() -> Any:
        async with open_client(args.url) as client:
            return await client.state_at(await client.expand_run_id(args.run_id), args.at)

    at = asyncio.run(read())
    if args.json:
        shown = record_fields(at)
        shown["status"] = at.status.value
        shown["nodes"] = [{**record_fields(node), "status": node.status.value} for node in at.nodes]
        print_json(shown)
        return 0
    print(f"run {at.run_id} at {at.seq} of {at.last_seq}: {at.status.value}")
    print(f"{'node':<24}{'status':<11}{'attempt':<9}output")
    for node in at.nodes:
        name = node.node + (f"[{node.key}]" if node.key else "")
        value = "" if node.output is None else json.dumps(node.output, default=str)
        value = value if len(value) <= 60 else value[:57] + "..."
        print(f"{name:<24}{node.status.value:<11}{node.attempt or '':<9}{value}")
    return 0


def _execution(execution: Any) -> dict[str, Any]:
    shown = record_fields(execution)
    shown["status"] = execution.status.value
    return shown


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
        async with open_client(args.url) as client:
            run_id = await client.expand_run_id(args.run_id)
            async for event in client.events(run_id, after=args.after, follow=not args.no_follow):
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
        print(_event_line(event), flush=True)

    def close(self) -> None:
        if self._in_text:
            print(flush=True)
            self._in_text = False


def _event_line(event: Any) -> str:
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
    return line
