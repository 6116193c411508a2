"""`flowstore run`, `flowstore resume` and `flowstore cancel`: runs executed (or stopped) here."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from flowstore.cli.common import add_url_option, open_client, print_json, run_id_argument
from flowstore.cli.db import database_url, existing_store
from flowstore.cli.definitions import (
    add_allow_option,
    add_resources_option,
    load_resources,
    load_workflow,
)
from flowstore.store.engine import StoreSettings

__all__ = ["add_commands", "add_fork_command"]

_SOURCE_HELP = "the workflow: module:attribute, file.py:attribute, or a YAML or JSON file"


def add_commands(commands: Any) -> None:
    """Register `run`, `resume` and `cancel`."""
    run = commands.add_parser(
        "run", help="run a workflow here, showing its progress and tokens; print its output"
    )
    run.add_argument("source", help=_SOURCE_HELP)
    run.add_argument("--input", default="{}", help="the inputs as a JSON object")
    add_url_option(run)
    add_resources_option(run)
    add_allow_option(run)
    run.add_argument(
        "--debug",
        action="store_true",
        help="debug mode: log every node's inputs, output, attempts and timings to stderr",
    )
    run.set_defaults(handler=_run)

    submit = commands.add_parser(
        "submit", help="queue a run of a workflow by name for the workers; print its id"
    )
    submit.add_argument("workflow", help="the workflow's name (a worker that runs it stored it)")
    submit.add_argument("--input", default="{}", help="the inputs as a JSON object")
    submit.add_argument(
        "--version", help="a version of the workflow (default: the newest a live worker has)"
    )
    submit.add_argument("--run-id", help="the run's id: submitting again with it is harmless")
    submit.add_argument(
        "--queue", help="the queue it waits its turn in (default: the workflow's config.queue)"
    )
    submit.add_argument(
        "--queue-key", help="its key in the queue, for a per-key limit (a customer's id, say)"
    )
    submit.add_argument("--priority", type=int, default=0, help="higher runs are started first")
    add_url_option(submit)
    submit.set_defaults(handler=_submit)

    resume = commands.add_parser("resume", help="continue an interrupted or failed run here")
    run_id_argument(resume)
    resume.add_argument("source", help=_SOURCE_HELP)
    add_url_option(resume)
    add_resources_option(resume)
    add_allow_option(resume)
    resume.add_argument(
        "--allow-changed-definition",
        action="store_true",
        help="run the current definition over the run's committed results even though the "
        "workflow changed since the run started (the refusal says what changed)",
    )
    resume.set_defaults(handler=_resume)

    signal = commands.add_parser(
        "signal", help="send a run a named signal (a node waiting for it takes it, once)"
    )
    run_id_argument(signal)
    signal.add_argument("name", help="the signal's name, as the node waits for it")
    signal.add_argument("--data", default="null", help="the payload as JSON")
    signal.add_argument(
        "--key", help="an idempotency key: sending again with the same key is harmless"
    )
    add_url_option(signal)
    signal.add_argument("--json", action="store_true", help="print the signal as JSON")
    signal.set_defaults(handler=_signal)

    cancel = commands.add_parser("cancel", help="cancel a run, wherever it runs")
    run_id_argument(cancel)
    add_url_option(cancel)
    cancel.add_argument("--json", action="store_true", help="print the run as JSON")
    cancel.set_defaults(handler=_cancel)


def add_fork_command(runs_commands: Any) -> None:
    """Register `runs fork`."""
    fork = runs_commands.add_parser(
        "fork",
        help="a new run that keeps a run's nodes up to one node, and executes the rest here",
        description=(
            "Start a new run from a run: NODE and every node that depends on it execute "
            "here; every other node keeps its output (or its skip) from the source run. The "
            "source run does not change. Prints the new run's output; its id goes to stderr."
        ),
    )
    run_id_argument(fork, "the source run")
    fork.add_argument("source", help=_SOURCE_HELP)
    fork.add_argument("--from", dest="from_node", required=True, metavar="NODE", help="the node")
    fork.add_argument("--input", default="{}", help="inputs laid over the source run's (JSON)")
    fork.add_argument("--version", help="the registered version to run (default: the newest)")
    add_url_option(fork)
    add_resources_option(fork)
    add_allow_option(fork)
    fork.set_defaults(handler=_fork)


def _fork(args: argparse.Namespace) -> int:
    workflow = load_workflow(args.source, args.allow)
    inputs = _inputs(args.input)

    async def fork() -> Any:
        async with _engine(args.url, resources=args.resources) as engine:
            engine.register(workflow)
            source = await engine.expand_run_id(args.run_id)
            return await engine.fork(
                source,
                args.from_node,
                inputs=inputs,
                version=args.version,
                observe=_Console(f"forked from run {source} at node {args.from_node}"),
            )

    forked = asyncio.run(fork())
    print(f"new run {forked.id}", file=sys.stderr)
    return _finish(forked)


class _Console:
    """Progress on stderr: a line per node as it starts and ends, tokens as they stream."""

    def __init__(self, first: str | None = None) -> None:
        self._started: dict[str, float] = {}
        self._first = first
        self._in_text = False

    def token(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()
        self._in_text = True

    def line(self, text: str) -> None:
        self.close()
        print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        """End the line of streamed text, if one is open."""
        if self._in_text:
            sys.stderr.write("\n")
            self._in_text = False

    def __call__(self, changes: Sequence[Any]) -> None:
        """Told of each batch of the run's changes once committed."""
        from flowstore.store.records import ErrorChange, EventChange, NodeChange, NodeStatus

        if self._first is not None:
            self.line(self._first)
            self._first = None
        now = time.perf_counter()
        for change in changes:
            if isinstance(change, EventChange) and change.name == "cache_hit":
                self.line(f"  cache hit {change.node}")
            if isinstance(change, ErrorChange) and change.outcome in _TOLD:
                error = f"{change.error_type.rsplit('.', 1)[-1]}: {change.message}"
                told = _TOLD[change.outcome]
                self.line(f"  {told:<9} {change.node} (attempt {change.attempt}: {error})")
            if not isinstance(change, NodeChange):
                continue
            if change.status is NodeStatus.RUNNING:
                self._started[change.node] = now
                continue
            took = ""
            if change.node in self._started:
                took = f" ({(now - self._started[change.node]) * 1000:.0f} ms)"
            self.line(f"  {change.status.value:<9} {change.node}{took}")


_TOLD = {"retried": "retrying", "fell_back": "fallback"}


def _engine(
    url: str | None, *, debug: bool = False, resources: str | None = None, create: bool = False
) -> Any:
    """An engine on the database of `url` that runs only what it is told to (no workers); a
    missing SQLite file is an error unless `create` (only `flowstore run` makes one)."""
    from flowstore.runtime.engine import Engine

    if debug:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        logging.getLogger("flowstore").addHandler(handler)
        logging.getLogger("flowstore").setLevel(logging.DEBUG)
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
    from flowstore.events import TokenEvent

    workflow = load_workflow(args.source, args.allow)
    inputs = _inputs(args.input)

    async def run() -> Any:
        async with _engine(
            args.url, debug=args.debug, resources=args.resources, create=True
        ) as engine:
            run_id = str(uuid.uuid4())
            console = _Console(f"run {run_id} of {workflow.name!r} in {engine.url}")
            events = engine.stream(workflow, inputs, run_id=run_id, observe=console)
            async for event in events:
                if isinstance(event, TokenEvent):
                    console.token(event.text)
            console.close()
            return await engine.get_run(run_id)

    return _finish(asyncio.run(run()))


def _inputs(text: str) -> dict[str, Any]:
    from flowstore.errors import InvalidValue

    try:
        inputs = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidValue(f"--input is not JSON: {error}") from None
    if not isinstance(inputs, dict):
        raise InvalidValue("--input must be a JSON object of workflow inputs")
    return inputs


def _submit(args: argparse.Namespace) -> int:
    inputs = _inputs(args.input)

    async def submit() -> str:
        async with open_client(args.url, writes=True) as client:
            run_id: str = await client.submit(
                args.workflow,
                inputs,
                version=args.version,
                run_id=args.run_id,
                queue=args.queue,
                queue_key=args.queue_key,
                priority=args.priority,
            )
            return run_id

    print(asyncio.run(submit()))
    return 0


def _resume(args: argparse.Namespace) -> int:
    workflow = load_workflow(args.source, args.allow)

    async def resume() -> Any:
        async with _engine(args.url, resources=args.resources) as engine:
            engine.register(workflow)
            return await engine.resume(
                await engine.expand_run_id(args.run_id),
                allow_changed_definition=args.allow_changed_definition,
                observe=_Console(),
            )

    return _finish(asyncio.run(resume()))


def _signal(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from flowstore.errors import InvalidValue

    try:
        payload = json.loads(args.data)
    except json.JSONDecodeError as error:
        raise InvalidValue(f"--data is not JSON: {error}") from None

    async def send() -> Any:
        async with open_client(args.url, writes=True) as client:
            run_id = await client.expand_run_id(args.run_id)
            return await client.signal(run_id, args.name, payload, idempotency_key=args.key)

    signal = asyncio.run(send())
    if args.json:
        print_json(asdict(signal))
    else:
        print(f"signal {signal.name!r} sent to run {signal.run_id} (signal {signal.id})")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    async def cancel() -> Any:
        async with open_client(args.url, writes=True) as client:
            return await client.cancel(await client.expand_run_id(args.run_id))

    run = asyncio.run(cancel())
    if args.json:
        print_json(run.model_dump(mode="json"))
    elif run.status.value == "cancelled":
        print(f"run {run.id} cancelled")
    elif run.status.is_terminal:
        print(f"run {run.id} had already ended: {run.status.value}")
    else:
        print(f"run {run.id}: cancellation requested; its worker stops it shortly")
    return 0
