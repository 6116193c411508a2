"""What every command shares: the database option, opening a client, run ids, JSON output."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from flowstore.cli.db import existing_store, reading_store

__all__ = [
    "HelpFormatter",
    "URL_HELP",
    "add_json_option",
    "add_url_option",
    "open_client",
    "print_json",
    "record_fields",
    "run_id_argument",
]

URL_HELP = "database URL (default: $FLOWSTORE_DATABASE_URL, else ./flowstore.db)"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows each option's default after its help, when it has a meaningful one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        help_text = action.help or ""
        default = action.default
        if (
            "%(default)" in help_text
            or "default" in help_text
            or default in (None, False, [], argparse.SUPPRESS)
            or action.option_strings == []
        ):
            return help_text
        return f"{help_text} (default: %(default)s)"


def add_url_option(parser: argparse.ArgumentParser) -> None:
    """`--url URL`."""
    parser.add_argument("--url", help=URL_HELP)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """`--json`: print the result as JSON, for scripts and `jq`."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run_id_argument(parser: argparse.ArgumentParser, help_text: str = "the run") -> None:
    """A positional RUN: its id, or any unique prefix of it."""
    parser.add_argument(
        "run_id", metavar="RUN", help=f"{help_text}: its id, or any prefix of it no other shares"
    )


def open_client(url: str | None, *, writes: bool = False) -> Any:
    """A `Client` on the database of `--url`, which must exist: commands register no worker
    and never create a database; unless the command `writes` (cancel), it only reads, so a
    database this user may not write is read all the same."""
    from flowstore.runtime.client import Client

    return Client(settings=existing_store(url) if writes else reading_store(url))


def print_json(value: Any) -> None:
    """Print `value` as indented JSON (datetimes as ISO 8601 text)."""
    json.dump(value, sys.stdout, indent=2, default=_plain)
    sys.stdout.write("\n")


def record_fields(record: Any) -> dict[str, Any]:
    """A stored record (a frozen dataclass) as fields for `print_json`."""
    return {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return str(value)
