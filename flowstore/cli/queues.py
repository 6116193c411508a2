"""`flowstore queues`: the queues, their limits and what waits in them; `set` and `remove`."""

from __future__ import annotations

import argparse
import asyncio
import re
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from flowstore.cli.common import add_json_option, add_url_option, print_json
from flowstore.cli.db import existing_store, reading_store
from flowstore.errors import FlowstoreError

__all__ = ["add_commands", "parse_rate"]

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(s|m|h)\s*$")
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def add_commands(commands: Any) -> None:
    """Register `queues` and its `set` and `remove`."""
    queues = commands.add_parser(
        "queues",
        help="the queues: their limits, runs queued, running and waiting, and the oldest wait",
        description=(
            "Without a subcommand: every queue with its limits, its runs queued (never "
            "started), running (each holding a place) and waiting (a sleep or a signal, "
            "holding none), and how long the oldest queued run has waited."
        ),
    )
    add_url_option(queues)
    add_json_option(queues)
    queues.set_defaults(handler=_list)
    actions = queues.add_subparsers(dest="queues_command", metavar="COMMAND")

    store = actions.add_parser(
        "set",
        help="store a queue, or replace its limits (a limit not given is none)",
        description=(
            "Store a queue with these limits, checked across every worker: a queue stored "
            "already has all its limits replaced (a limit not given is lifted)."
        ),
    )
    store.add_argument("name", help="the queue's name")
    store.add_argument("--concurrency", type=int, help="the most of its runs running at once")
    store.add_argument(
        "--per-key", type=int, help="the most of its runs with one queue key running at once"
    )
    store.add_argument(
        "--rate",
        metavar="N/PERIOD",
        help="the most of its runs started per period: 10/s, 100/m, 5/30s, 1000/h",
    )
    add_url_option(store)
    add_json_option(store)
    store.set_defaults(handler=_set)

    remove = actions.add_parser("remove", help="delete a queue that no unended run is in")
    remove.add_argument("name", help="the queue's name")
    add_url_option(remove)
    remove.set_defaults(handler=_remove)


def parse_rate(text: str) -> tuple[int, float]:
    """`10/s` as (10, 1.0), `5/30s` as (5, 30.0), `100/m` as (100, 60.0).

    Raises:
        FlowstoreError: It is not a count over a period.
    """
    found = _RATE.match(text)
    if found is None or int(found[1]) < 1 or (found[2] is not None and float(found[2]) <= 0):
        raise FlowstoreError(
            f"--rate {text!r}: give starts per period, as 10/s, 100/m, 5/30s or 1000/h"
        )
    return int(found[1]), float(found[2] or 1) * _UNIT_SECONDS[found[3]]


def _set(args: argparse.Namespace) -> int:
    from flowstore.store import open_store
    from flowstore.store.queue_records import Queue

    rate_limit, rate_period = parse_rate(args.rate) if args.rate else (None, 1.0)
    queue = Queue(
        args.name,
        concurrency=args.concurrency,
        per_key=args.per_key,
        rate_limit=rate_limit,
        rate_period=rate_period,
    )

    async def store() -> None:
        async with await open_store(existing_store(args.url)) as opened:
            await opened.set_queue(queue)

    asyncio.run(store())
    if args.json:
        print_json(asdict(queue))
    else:
        print(f"queue {queue.name}: {queue.describe()}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from flowstore.store import open_store

    async def remove() -> None:
        async with await open_store(existing_store(args.url)) as opened:
            await opened.remove_queue(args.name)

    asyncio.run(remove())
    print(f"removed queue {args.name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from flowstore.store import open_store

    async def read() -> Any:
        async with await open_store(reading_store(args.url)) as opened:
            return await opened.queue_states()

    states = asyncio.run(read())
    now = datetime.now(UTC)
    if args.json:
        print_json(
            [
                {
                    **asdict(state.queue),
                    "queued": state.queued,
                    "running": state.running,
                    "waiting": state.waiting,
                    "oldest_queued_at": state.oldest_queued_at,
                    "oldest_wait_seconds": _waited(state.oldest_queued_at, now),
                    "started_recently": state.started_recently,
                }
                for state in states
            ]
        )
        return 0
    if not states:
        print("no queues: declare one with Engine(queues=[Queue(...)]) or `flowstore queues set`")
        return 0
    print(f"{'queue':<20}{'queued':>8}{'running':>9}{'waiting':>9}{'oldest wait':>13}  limits")
    for state in states:
        waited = _waited(state.oldest_queued_at, now)
        oldest = "-" if waited is None else _duration(waited)
        limits = state.queue.describe()
        if state.started_recently is not None:
            limits += f" ({state.started_recently} started in the last window)"
        print(
            f"{state.queue.name:<20}{state.queued:>8}{state.running:>9}{state.waiting:>9}"
            f"{oldest:>13}  {limits}"
        )
    return 0


def _waited(since: datetime | None, now: datetime) -> float | None:
    return None if since is None else max((now - since).total_seconds(), 0.0)


def _duration(seconds: float) -> str:
    """`4.2 s`, `13 min`, `5.1 h`, `3.0 d`."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
