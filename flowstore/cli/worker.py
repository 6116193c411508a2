"""`flowstore worker`: a process that claims and executes runs until it is stopped; and
`flowstore workers`: the live workers and the runs they hold.

On SIGTERM or SIGINT a worker stops claiming, lets the runs in flight end within `--grace`
seconds, then releases what is left, so another worker takes those runs over at once (from
what they committed). A second signal stops at once, releasing everything.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from flowstore.cli.common import add_json_option, print_json
from flowstore.cli.db import database_url, reading_store
from flowstore.cli.definitions import (
    add_allow_option,
    add_resources_option,
    load_resources,
    load_workflow,
)
from flowstore.errors import FlowstoreError

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Register `worker`."""
    worker = commands.add_parser(
        "worker", help="claim and execute submitted runs (and recover crashed ones) until stopped"
    )
    worker.add_argument(
        "--workflows",
        nargs="+",
        required=True,
        metavar="SOURCE",
        help="the workflows to run: module:attribute, or YAML or JSON files",
    )
    worker.add_argument(
        "--url", help="database URL (default: $FLOWSTORE_DATABASE_URL or ./flowstore.db)"
    )
    worker.add_argument("--concurrency", type=int, default=4, help="runs executed at once")
    worker.add_argument("--lease", type=float, default=30.0, help="lease length in seconds")
    worker.add_argument("--poll", type=float, default=1.0, help="longest sleep between looks")
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on SIGTERM or SIGINT, how long runs in flight may take to end before they are "
        "released to other workers (default 30); a second signal stops at once",
    )
    worker.add_argument(
        "--keep-runs",
        metavar="AGE",
        help="delete runs that ended longer ago than AGE (30d, 12h), once an hour, as "
        "`flowstore gc` does",
    )
    add_resources_option(worker)
    add_allow_option(worker)
    worker.set_defaults(handler=_worker)

    workers = commands.add_parser("workers", help="live workers and the runs they hold")
    workers.add_argument(
        "--url", help="database URL (default: $FLOWSTORE_DATABASE_URL or ./flowstore.db)"
    )
    workers.add_argument("--all", action="store_true", help="also workers whose heartbeat stopped")
    add_json_option(workers)
    workers.set_defaults(handler=_workers)


def _worker(args: argparse.Namespace) -> int:
    from flowstore.runtime.engine import Engine

    workflows = [load_workflow(source, args.allow) for source in args.workflows]
    resources = load_resources(args.resources)
    retention = None
    if args.keep_runs is not None:
        from flowstore.cli.reports import parse_since
        from flowstore.runtime.retention import Retention

        now = datetime.now(UTC)
        kept = now - parse_since(args.keep_runs, now=now, option="--keep-runs")
        if kept <= timedelta(0):
            raise FlowstoreError(f"--keep-runs {args.keep_runs!r}: give an age, such as 30d")
        retention = Retention(older_than=kept)

    async def serve() -> None:
        stop, at_once = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                at_once.set()
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)
        async with Engine(
            database_url(args.url),
            workflows=workflows,
            workers=args.concurrency,
            lease_seconds=args.lease,
            poll_seconds=args.poll,
            resources=resources,
            retention=retention,
        ) as engine:
            names = ", ".join(workflow.name for workflow in workflows)
            print(f"worker {engine.worker_id} running {names}", file=sys.stderr, flush=True)
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait(
                [stopping, asyncio.ensure_future(engine.stopped.wait())],
                return_when="FIRST_COMPLETED",
            )
            if engine.failure is not None:
                stopping.cancel()
                raise engine.failure
            print(
                f"worker stopping: claiming no more runs; {engine.executing} in flight get up "
                f"to {args.grace:g} s to end (a second signal releases them at once)",
                file=sys.stderr,
                flush=True,
            )
            await engine.drain(args.grace, at_once=at_once)
        print("worker stopped", file=sys.stderr, flush=True)

    asyncio.run(serve())
    return 0


def _workers(args: argparse.Namespace) -> int:
    from flowstore.runtime.worker_list import list_workers
    from flowstore.store import open_store

    async def read() -> list[Any]:
        async with await open_store(reading_store(args.url)) as store:
            return await list_workers(store, silent_too=args.all)

    shown = asyncio.run(read())
    if args.json:
        print_json(
            [
                {
                    "id": listing.worker.id,
                    "hostname": listing.worker.hostname,
                    "pid": listing.worker.pid,
                    "started_at": listing.worker.started_at,
                    "heartbeat_at": listing.worker.heartbeat_at,
                    "heartbeat_age_seconds": listing.heartbeat_age,
                    "runs": listing.runs,
                }
                for listing in shown
            ]
        )
        return 0
    print(f"{'worker':<40}{'host':<20}{'pid':<9}{'heartbeat':<12}runs")
    for listing in shown:
        worker, runs = listing.worker, listing.runs
        held = ", ".join(runs[:5]) + (f", … ({len(runs)})" if len(runs) > 5 else "")
        age = f"{listing.heartbeat_age:.1f} s ago"
        print(f"{worker.id:<40}{worker.hostname:<20}{worker.pid:<9}{age:<12}{held}")
    return 0
