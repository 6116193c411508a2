"""`flowstore worker`: a process that claims and executes runs until it is stopped."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any

from flowstore.cli.db import database_url
from flowstore.cli.definitions import add_resources_option, load_resources, load_workflow

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
    add_resources_option(worker)
    worker.set_defaults(handler=_worker)


def _worker(args: argparse.Namespace) -> int:
    from flowstore.runtime.engine import Engine

    workflows = [load_workflow(source) for source in args.workflows]
    resources = load_resources(args.resources)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with Engine(
            database_url(args.url),
            workflows=workflows,
            workers=args.concurrency,
            lease_seconds=args.lease,
            poll_seconds=args.poll,
            resources=resources,
        ) as engine:
            names = ", ".join(workflow.name for workflow in workflows)
            print(f"worker {engine.worker_id} running {names}", file=sys.stderr, flush=True)
            await stop.wait()
        print("worker stopped", file=sys.stderr, flush=True)

    asyncio.run(serve())
    return 0
