"""`flowstore secrets key`: a new key that encrypts secret fields at rest."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Register `secrets`."""
    secrets = commands.add_parser("secrets", help="keys that encrypt secret fields at rest")
    secrets_commands = secrets.add_subparsers(
        dest="secrets_command", required=True, metavar="COMMAND"
    )
    key = secrets_commands.add_parser(
        "key",
        help="print a new key: give it to every engine, worker and client as "
        "FLOWSTORE_SECRETS_KEY, and keep it out of the database",
    )
    key.set_defaults(handler=_key)


def _key(_: argparse.Namespace) -> int:
    from flowstore.runtime.sealing import new_secrets_key

    print(new_secrets_key())
    return 0
