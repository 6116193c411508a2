"""The `flowstore` command line (also `python -m flowstore`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowstore.cli import cache, db, definitions, memory, reports, runs, worker
from flowstore.errors import FlowstoreError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="flowstore", description="A durable workflow engine persisted through SQL."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db.add_commands(commands)
    definitions.add_commands(commands)
    runs.add_commands(commands)
    reports.add_commands(commands)
    cache.add_commands(commands)
    memory.add_commands(commands)
    worker.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except FlowstoreError as error:
        print(f"flowstore: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status
