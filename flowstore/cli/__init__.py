"""The `flowstore` command line (also `python -m flowstore`).

Every mistake on the command line is one line on stderr and a non-zero exit, never a
traceback: flowstore's own errors (a bad URL, an unknown run, an invalid definition) exit 1,
argparse's usage errors exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from flowstore.cli import (
    cache,
    db,
    definitions,
    gc,
    memory,
    queues,
    reports,
    running,
    runs,
    schedules,
    secrets,
    ui,
    worker,
)
from flowstore.cli.common import HelpFormatter
from flowstore.errors import FlowstoreError

__all__ = ["build_parser", "main"]


class _Parser(argparse.ArgumentParser):
    """Every parser shows option defaults in its help."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    from flowstore import __version__

    parser = _Parser(
        prog="flowstore", description="A durable workflow engine persisted through SQL."
    )
    parser.add_argument("--version", action="version", version=f"flowstore {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db.add_commands(commands)
    definitions.add_commands(commands)
    running.add_commands(commands)
    runs.add_commands(commands)
    reports.add_commands(commands)
    cache.add_commands(commands)
    gc.add_commands(commands)
    memory.add_commands(commands)
    queues.add_commands(commands)
    schedules.add_commands(commands)
    secrets.add_commands(commands)
    ui.add_commands(commands)
    worker.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        status: int = args.handler(args)
        sys.stdout.flush()  # a reader that left is seen here, not at exit
    except FlowstoreError as error:
        print(f"flowstore: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader left (`flowstore runs list | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    return status
