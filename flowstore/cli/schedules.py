"""`flowstore schedules`: the schedules, their next ticks and what they started; `add`,
`pause`, `resume`, `remove` and `ticks`."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict
from typing import Any

from flowstore.cli.common import add_json_option, add_url_option, open_client, print_json
from flowstore.cli.reports import parse_duration, parse_since
from flowstore.errors import FlowstoreError

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Register `schedules` and its subcommands."""
    schedules = commands.add_parser(
        "schedules",
        help="workflows started on a cron expression or an interval, each tick once",
        description=(
            "Without a subcommand: every schedule with its timing, next tick, ticks started "
            "and skipped, and whether it is paused. The workers of a schedule's workflow "
            "start its ticks, each once however many run."
        ),
    )
    add_url_option(schedules)
    add_json_option(schedules)
    schedules.set_defaults(handler=_list)
    actions = schedules.add_subparsers(dest="schedules_command", metavar="COMMAND")

    add = actions.add_parser(
        "add",
        help="store a schedule (one of the same name is replaced)",
        description=(
            "Store a schedule of a workflow a worker has stored. One of the same name is "
            "replaced; with the same timing it keeps its next tick."
        ),
    )
    add.add_argument("name", help="the schedule's name")
    add.add_argument("workflow", help="the workflow's name")
    timing = add.add_mutually_exclusive_group(required=True)
    timing.add_argument(
        "--cron", help="a cron expression, such as '0 3 * * *' (six fields: seconds last)"
    )
    timing.add_argument("--every", metavar="AGE", help="an interval: 30s, 5m, 2h, 1d")
    add.add_argument("--input", default="{}", help="the inputs of every run, as a JSON object")
    add.add_argument("--timezone", default="UTC", help="the time zone the cron is read in")
    add.add_argument(
        "--missed",
        choices=("skip", "catch-up"),
        default="skip",
        help="ticks found later than --grace (no worker ran): skip them, or start the latest "
        "--catch-up-limit of them",
    )
    add.add_argument("--catch-up-limit", type=int, default=10, help="the most late ticks started")
    add.add_argument(
        "--grace", default="60s", metavar="AGE", help="how late a tick may start all the same"
    )
    add.add_argument("--queue", help="the queue of its runs (default: the workflow's)")
    add.add_argument("--queue-key", help="their key in the queue")
    add.add_argument("--priority", type=int, default=0, help="their priority")
    add.add_argument(
        "--start-at", metavar="TIME", help="the first tick (interval) or when ticks begin: ISO 8601"
    )
    add_url_option(add)
    add_json_option(add)
    add.set_defaults(handler=_add)

    for action, what in (
        ("pause", "start no tick until it is resumed"),
        ("resume", "start its ticks again, from the next one after now"),
        ("remove", "delete a schedule (the runs it started stay)"),
    ):
        parser = actions.add_parser(action, help=what)
        parser.add_argument("name", help="the schedule's name")
        add_url_option(parser)
        parser.set_defaults(handler=_change, action=action)

    ticks = actions.add_parser("ticks", help="a schedule's latest ticks and their runs")
    ticks.add_argument("name", help="the schedule's name")
    ticks.add_argument("--limit", type=int, default=20, help="at most this many ticks")
    add_url_option(ticks)
    add_json_option(ticks)
    ticks.set_defaults(handler=_ticks)


def _add(args: argparse.Namespace) -> int:
    try:
        inputs = json.loads(args.input)
    except json.JSONDecodeError as error:
        raise FlowstoreError(f"--input is not JSON: {error}") from None
    if not isinstance(inputs, dict):
        raise FlowstoreError("--input must be a JSON object of the workflow's inputs")
    every = parse_duration(args.every, option="--every") if args.every else None
    grace = (
        0.0 if args.grace.strip() in ("0", "0s") else parse_duration(args.grace, option="--grace")
    )
    start_at = parse_since(args.start_at, option="--start-at") if args.start_at else None

    async def add() -> Any:
        async with open_client(args.url, writes=True) as client:
            return await client.schedule(
                args.workflow,
                args.name,
                cron=args.cron,
                every=every,
                inputs=inputs,
                timezone=args.timezone,
                missed=args.missed.replace("-", "_"),
                catch_up_limit=args.catch_up_limit,
                grace_seconds=grace,
                queue=args.queue,
                queue_key=args.queue_key,
                priority=args.priority,
                start_at=start_at,
            )

    schedule = asyncio.run(add())
    if args.json:
        print_json(asdict(schedule))
    else:
        print(
            f"schedule {schedule.name}: {schedule.workflow}, {schedule.describe()}; next tick "
            f"{schedule.next_at:%Y-%m-%d %H:%M:%S} UTC"
        )
    return 0


def _change(args: argparse.Namespace) -> int:
    async def change() -> None:
        async with open_client(args.url, writes=True) as client:
            if args.action == "pause":
                await client.pause_schedule(args.name)
            elif args.action == "resume":
                await client.resume_schedule(args.name)
            else:
                await client.remove_schedule(args.name)

    asyncio.run(change())
    done = {"pause": "paused", "resume": "resumed", "remove": "removed"}[args.action]
    print(f"{done} schedule {args.name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    async def read() -> Any:
        async with open_client(args.url) as client:
            return await client.list_schedules()

    schedules = asyncio.run(read())
    if args.json:
        print_json([asdict(schedule) for schedule in schedules])
        return 0
    if not schedules:
        print("no schedules: add one with `flowstore schedules add` or Engine.schedule(...)")
        return 0
    print(
        f"{'schedule':<20}{'workflow':<20}{'next tick (UTC)':<21}{'started':>8}{'skipped':>8}  when"
    )
    for schedule in schedules:
        upcoming = "paused" if schedule.paused_at else f"{schedule.next_at:%Y-%m-%d %H:%M:%S}"
        print(
            f"{schedule.name:<20}{schedule.workflow:<20}{upcoming:<21}{schedule.started:>8}"
            f"{schedule.skipped:>8}  {schedule.describe()}"
        )
    return 0


def _ticks(args: argparse.Namespace) -> int:
    async def read() -> Any:
        async with open_client(args.url) as client:
            await client.store.get_schedule(args.name)
            return await client.store.list_ticks(args.name, limit=args.limit)

    ticks = asyncio.run(read())
    if args.json:
        print_json([{"tick_at": at, "run_id": run_id} for at, run_id in ticks])
        return 0
    for at, run_id in ticks:
        print(f"{at:%Y-%m-%d %H:%M:%S.%f}  {run_id or '(run deleted)'}")
    return 0
