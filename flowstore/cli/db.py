"""`flowstore db ...`: apply and inspect schema migrations."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from flowstore.store.engine import DEFAULT_URL, StoreSettings, database_url, sqlite_path

__all__ = ["add_commands", "database_url", "existing_store", "reading_store"]


def existing_store(given: str | None) -> StoreSettings:
    """Settings that open the database of `--url` (see `database_url`) only if it exists: a
    command that reads never creates a database on a mistyped path."""
    return StoreSettings(url=database_url(given), create=False)


def reading_store(given: str | None) -> StoreSettings:
    """Settings for a command that only reads: the database must exist, nothing is migrated
    or written, and a file this user may not write is opened read-only."""
    return StoreSettings(url=database_url(given), create=False, read_only=True)


def add_commands(commands: Any) -> None:
    """Register the `db` subcommands."""
    parser = commands.add_parser("db", help="apply and inspect schema migrations")
    db_commands = parser.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    url_help = f"database URL (default: $FLOWSTORE_DATABASE_URL or {DEFAULT_URL})"

    upgrade = db_commands.add_parser("upgrade", help="apply migrations up to a revision")
    upgrade.add_argument("--url", help=url_help)
    upgrade.add_argument("--revision", default="head", help="target revision (default: head)")
    upgrade.set_defaults(handler=_upgrade)

    downgrade = db_commands.add_parser("downgrade", help="revert migrations down to a revision")
    downgrade.add_argument("revision", help="target revision; `base` removes every table")
    downgrade.add_argument("--url", help=url_help)
    downgrade.set_defaults(handler=_downgrade)

    current = db_commands.add_parser("current", help="print the database's schema revision")
    current.add_argument("--url", help=url_help)
    current.set_defaults(handler=_current)


def _upgrade(args: argparse.Namespace) -> int:
    from flowstore.store import migrate

    url = database_url(args.url)

    async def run() -> str | None:
        engine = _engine(url)
        try:
            await migrate.upgrade(engine, args.revision)
            return (await migrate.schema_status(engine)).current
        finally:
            await engine.dispose()

    print(f"{_shown(url)} is at revision {asyncio.run(run())}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from flowstore.store import migrate

    url = database_url(args.url)

    async def run() -> str | None:
        engine = _engine(url)
        try:
            await migrate.downgrade(engine, args.revision)
            return (await migrate.schema_status(engine)).current
        finally:
            await engine.dispose()

    print(f"{_shown(url)} is at revision {asyncio.run(run()) or 'base'}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from flowstore.store import migrate

    url = database_url(args.url)

    async def run() -> migrate.SchemaStatus:
        file = sqlite_path(url)
        if file is not None and not file.exists():  # asked, not created
            return migrate.SchemaStatus(current=None, head=migrate.HEAD_REVISION, has_tables=False)
        engine = _engine(url)
        try:
            return await migrate.schema_status(engine)
        finally:
            await engine.dispose()

    status = asyncio.run(run())
    state = "up to date" if status.up_to_date else f"behind: head is {status.head}"
    print(f"{status.current or 'base (no flowstore schema)'} ({state})")
    return 0


def _engine(url: str) -> Any:
    from flowstore.store.engine import StoreSettings, create_engine

    return create_engine(StoreSettings(url=url))


def _shown(url: str) -> str:
    from flowstore.store.engine import normalize_url

    return normalize_url(url).render_as_string(hide_password=True)
