"""`flowstore cache clear`: delete cached node outputs."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from flowstore.cli.db import existing_store

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Register `cache`."""
    cache = commands.add_parser("cache", help="the cache of node outputs")
    cache_commands = cache.add_subparsers(dest="cache_command", required=True, metavar="COMMAND")
    clear = cache_commands.add_parser("clear", help="delete cached outputs")
    clear.add_argument("--workflow", help="only this workflow's entries")
    clear.add_argument("--node", help="only this node's entries")
    clear.add_argument("--expired", action="store_true", help="only entries past their TTL")
    clear.add_argument(
        "--url", help="database URL (default: $FLOWSTORE_DATABASE_URL or ./flowstore.db)"
    )
    clear.set_defaults(handler=_clear)


def _clear(args: argparse.Namespace) -> int:
    from flowstore.store import open_store

    async def clear() -> int:
        async with await open_store(existing_store(args.url)) as store:
            return await store.clear_cache(
                workflow=args.workflow, node=args.node, expired_only=args.expired
            )

    removed = asyncio.run(clear())
    print(f"removed {removed} cached output{'' if removed == 1 else 's'}")
    return 0
