"""`flowstore gc`: delete runs that ended long ago, and give their space back."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from flowstore.cli.common import add_json_option, add_url_option, print_json
from flowstore.cli.db import existing_store
from flowstore.cli.reports import parse_since
from flowstore.errors import FlowstoreError
from flowstore.store.records import RunStatus

__all__ = ["add_commands"]

_ENDED = tuple(status.value for status in RunStatus if status.is_terminal)


def add_commands(commands: Any) -> None:
    """Register `gc`."""
    gc = commands.add_parser(
        "gc",
        help="delete runs that ended long ago, with everything that belongs to them",
        description=(
            "Delete the runs that ended before a time, with their node executions, log, "
            "checkpoints, waits, signals, errors, spans and metrics, in short batches that "
            "running workflows commit between. Messages and entity versions they wrote stay."
        ),
    )
    gc.add_argument(
        "--older-than",
        required=True,
        metavar="AGE",
        help="runs that ended before this: an age (30d, 12h, 90m) or an ISO 8601 time",
    )
    gc.add_argument(
        "--status",
        action="append",
        choices=_ENDED,
        help="only runs that ended so (repeat for several; default: all three)",
    )
    gc.add_argument(
        "--keep-stats",
        action="store_true",
        help="keep their metrics and model calls, tied to no run, so `flowstore stats` "
        "still counts them",
    )
    gc.add_argument("--limit", type=int, help="delete at most this many runs")
    gc.add_argument(
        "--dry-run", action="store_true", help="count the runs it would delete; delete nothing"
    )
    gc.add_argument(
        "--vacuum",
        action="store_true",
        help="then rewrite a SQLite file without its free pages (writers wait meanwhile)",
    )
    add_url_option(gc)
    add_json_option(gc)
    gc.set_defaults(handler=_gc)


def _gc(args: argparse.Namespace) -> int:
    from flowstore.runtime.retention import delete_old_runs
    from flowstore.store import open_store

    ended_before = parse_since(args.older_than, option="--older-than")
    if ended_before > datetime.now(UTC):
        raise FlowstoreError(f"--older-than {args.older_than!r} is in the future")
    if args.limit is not None and args.limit < 1:
        raise FlowstoreError(f"--limit {args.limit}: give a positive number of runs")
    statuses = [RunStatus(status) for status in (args.status or _ENDED)]

    async def collect() -> dict[str, Any]:
        async with await open_store(existing_store(args.url)) as store:
            if args.dry_run:
                count = await store.count_ended_runs(ended_before=ended_before, statuses=statuses)
                return {"would_delete": count, "ended_before": ended_before.isoformat()}
            sweep = await delete_old_runs(
                store,
                ended_before=ended_before,
                statuses=statuses,
                keep_stats=args.keep_stats,
                limit=args.limit,
            )
            if args.vacuum:
                await store.vacuum()
            use = await store.space_use()
            return {
                **asdict(sweep),
                "ended_before": ended_before.isoformat(),
                **asdict(use),
            }

    done = asyncio.run(collect())
    if args.json:
        print_json(done)
    elif args.dry_run:
        print(f"would delete {done['would_delete']} runs that ended before {done['ended_before']}")
    else:
        print(
            f"deleted {done['deleted']} runs that ended before {done['ended_before']} "
            f"in {done['batches']} batches (longest {done['longest_batch_ms']:.0f} ms)"
        )
        if done["file_bytes"]:
            free = done["free_bytes"] / 2**20
            print(
                f"database file: {done['file_bytes'] / 2**20:.1f} MB, {free:.1f} MB free"
                + ("" if done["incremental"] or not free else " (flowstore gc --vacuum frees it)")
            )
    return 0
