"""`flowstore errors` and `flowstore stats`: error reports and statistics, from SQL."""

from __future__ import annotations

import argparse
import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flowstore.cli.common import (
    add_json_option,
    add_url_option,
    open_client,
    print_json,
    record_fields,
)
from flowstore.cli.db import reading_store
from flowstore.errors import FlowstoreError

__all__ = ["add_commands", "parse_duration", "parse_since"]

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def add_commands(commands: Any) -> None:
    """Register `errors` and `stats`."""
    stats = commands.add_parser(
        "stats",
        help="per workflow and node: runs, success rate, p50/p95 durations, cache hits, "
        "waits, and model calls with their tokens and cost",
    )
    stats.add_argument("--workflow", help="only this workflow")
    add_url_option(stats)
    add_json_option(stats)
    stats.set_defaults(handler=_stats)

    errors = commands.add_parser(
        "errors", help="failures and what happened next (retried, fell back, failed the run)"
    )
    errors.add_argument("--run", metavar="RUN", help="only this run's errors (an id or a prefix)")
    errors.add_argument(
        "--since", help="only errors since a time: ISO 8601 (2026-11-25T10:00) or 30m, 2h, 1d ago"
    )
    errors.add_argument("--limit", type=int, default=100, help="at most this many errors")
    add_url_option(errors)
    add_json_option(errors)
    errors.set_defaults(handler=_errors)


def parse_since(text: str, *, now: datetime | None = None, option: str = "--since") -> datetime:
    """A `--since` value as an aware UTC time: ISO 8601 (naive means UTC), or `30m`-style ago.

    Raises:
        FlowstoreError: The text is neither.
    """
    relative = _RELATIVE.match(text.strip())
    if relative:
        amount, unit = relative.groups()
        return (now or datetime.now(UTC)) - timedelta(**{_UNITS[unit]: float(amount)})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise FlowstoreError(
            f"{option} {text!r}: give an ISO 8601 time (2026-11-25T10:00) or an age such as "
            "30m, 2h or 1d"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_duration(text: str, *, option: str) -> float:
    """A length of time such as `30s`, `1.5m`, `2h` or `1d`, in seconds (above 0).

    Raises:
        FlowstoreError: The text is not one.
    """
    relative = _RELATIVE.match(text.strip())
    if relative is None or float(relative[1]) <= 0:
        raise FlowstoreError(f"{option} {text!r}: give a length of time such as 30s, 5m, 2h or 1d")
    return timedelta(**{_UNITS[relative[2]]: float(relative[1])}).total_seconds()


def _stats(args: argparse.Namespace) -> int:
    from flowstore.store import open_store

    async def read() -> Any:
        async with await open_store(reading_store(args.url)) as store:
            return (
                await store.run_stats(workflow=args.workflow),
                await store.node_stats(workflow=args.workflow),
                await store.wait_stats(workflow=args.workflow),
                await store.llm_usage(workflow=args.workflow),
            )

    run_rows, node_rows, wait_rows, llm_rows = asyncio.run(read())
    if args.json:
        print_json(
            {
                "runs": list(map(record_fields, run_rows)),
                "nodes": list(map(record_fields, node_rows)),
                "waits": list(map(record_fields, wait_rows)),
                "llm": list(map(record_fields, llm_rows)),
            }
        )
        return 0
    print(
        f"{'workflow':<24}{'runs':>6}{'ok':>6}{'failed':>8}{'success':>9}"
        f"{'p50 ms':>10}{'p95 ms':>10}{'queue ms':>10}"
    )
    for run in run_rows:
        print(
            f"{run.workflow or '-':<24}{run.runs:>6}{run.succeeded:>6}{run.failed:>8}"
            f"{_percent(run.success_rate):>9}{_ms(run.p50_ms):>10}{_ms(run.p95_ms):>10}"
            f"{_ms(run.mean_queue_wait_ms):>10}"
        )
    print()
    print(
        f"{'workflow':<24}{'node':<24}{'calls':>6}{'success':>9}{'p50 ms':>10}{'p95 ms':>10}"
        f"{'retries':>9}{'cache hits':>12}"
    )
    for node in node_rows:
        hits = "-" if not node.cache_lookups else _percent(node.cache_hit_rate)
        print(
            f"{node.workflow or '-':<24}{node.node:<24}{node.executions:>6}"
            f"{_percent(node.success_rate):>9}{_ms(node.p50_ms):>10}{_ms(node.p95_ms):>10}"
            f"{node.retries:>9}{hits:>12}"
        )
    if wait_rows:  # time waited, which node durations leave out
        print()
        print(
            f"{'workflow':<24}{'node':<24}{'waits for':<20}{'waits':>6}{'open':>6}"
            f"{'p50 ms':>10}{'p95 ms':>10}{'timed out':>11}"
        )
        for wait in wait_rows:
            what = wait.kind if wait.name is None else f"{wait.kind} {wait.name}"
            print(
                f"{wait.workflow or '-':<24}{wait.node:<24}{what:<20}{wait.waits:>6}"
                f"{wait.open:>6}{_ms(wait.p50_ms):>10}{_ms(wait.p95_ms):>10}"
                f"{wait.timed_out:>11}"
            )
    if llm_rows:  # model calls: tokens and cost
        _print_llm_usage(llm_rows)
    return 0


def _print_llm_usage(rows: list[Any]) -> None:
    print()
    print(
        f"{'workflow':<24}{'node':<24}{'model':<20}{'calls':>6}{'failed':>8}{'cached':>8}"
        f"{'prompt':>10}{'completion':>12}{'cost':>12}{'mean ms':>10}"
    )
    for row in rows:
        cost = "-" if row.cost is None else f"{row.cost:.6f}"
        print(
            f"{row.workflow:<24}{row.node:<24}{row.model:<20}{row.calls:>6}{row.failed:>8}"
            f"{row.cached:>8}{row.prompt_tokens:>10}{row.completion_tokens:>12}{cost:>12}"
            f"{_ms(row.mean_latency_ms):>10}"
        )


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _errors(args: argparse.Namespace) -> int:
    from flowstore.store.records import RunId

    since = parse_since(args.since) if args.since else None

    async def listing() -> Any:
        async with open_client(args.url) as client:
            run_id = RunId(await client.expand_run_id(args.run)) if args.run else None
            return await client.store.list_errors(run_id=run_id, since=since, limit=args.limit)

    reports = asyncio.run(listing())
    if args.json:
        print_json([record_fields(report) for report in reports])
        return 0
    print(f"{'time':<21}{'run':<38}{'node':<24}{'attempt':<9}{'outcome':<12}error")
    for report in reports:
        created = report.created_at.strftime("%Y-%m-%d %H:%M:%S") if report.created_at else ""
        node = (report.node or "-") + (f"[{report.key}]" if report.key else "")
        attempt = "" if report.attempt is None else str(report.attempt)
        message = report.message.splitlines()[0] if report.message else ""
        error = f"{report.error_type.rsplit('.', 1)[-1]}: {message}"
        print(
            f"{created:<21}{report.run_id or '-':<38}{node:<24}{attempt:<9}"
            f"{report.outcome or '':<12}{error}"
        )
    return 0
