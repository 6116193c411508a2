"""`flowstore memory`: conversation threads and entities, as stored."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from typing import Any

from flowstore.cli.common import URL_HELP, add_json_option, print_json
from flowstore.cli.db import reading_store

__all__ = ["add_commands"]

_URL_HELP = URL_HELP


def add_commands(commands: Any) -> None:
    """Register `memory`."""
    memory = commands.add_parser("memory", help="conversation threads and entities")
    memory_commands = memory.add_subparsers(dest="memory_command", required=True, metavar="COMMAND")
    show = memory_commands.add_parser("show", help="a thread's messages, oldest first")
    show.add_argument("thread", help="the thread's id")
    show.add_argument("--limit", type=int, help="only the latest this many")
    show.add_argument("--json", action="store_true", help="one JSON object per message")
    show.add_argument("--url", help=_URL_HELP)
    show.set_defaults(handler=_show)
    threads = memory_commands.add_parser("threads", help="threads, latest message first")
    threads.add_argument("--limit", type=int, default=50, help="at most this many threads")
    threads.add_argument("--url", help=_URL_HELP)
    add_json_option(threads)
    threads.set_defaults(handler=_threads)
    entities = memory_commands.add_parser("entities", help="entities and their attributes")
    entities.add_argument("--namespace", help="only this namespace")
    entities.add_argument("--name", help="only names starting with this")
    entities.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only entities whose attribute KEY is VALUE (JSON, else text); repeatable",
    )
    entities.add_argument("--limit", type=int, default=100, help="at most this many entities")
    entities.add_argument("--url", help=_URL_HELP)
    add_json_option(entities)
    entities.set_defaults(handler=_entities)


def _show(args: argparse.Namespace) -> int:
    from flowstore.store import open_store

    async def read() -> Any:
        async with await open_store(reading_store(args.url)) as store:
            return await store.read_messages(args.thread, limit=args.limit)

    messages = asyncio.run(read())
    if not messages and not args.json:
        print(f"thread {args.thread!r} has no messages")
    for message in messages:
        if args.json:
            fields = {
                "id": message.id,
                "role": message.role,
                "content": message.content,
                "metadata": message.metadata,
                "tokens": message.tokens,
                "run_id": message.run_id,
                "node": message.node,
                "created_at": message.created_at.isoformat(),
            }
            print(json.dumps(fields, default=str))
            continue
        when = message.created_at.strftime("%Y-%m-%d %H:%M:%S")
        source = f" ({message.node} in run {message.run_id})" if message.run_id else ""
        text = (
            message.content
            if isinstance(message.content, str)
            else json.dumps(message.content, default=str)
        )
        print(f"#{message.id} {when} {message.role} [{message.tokens} tokens]{source}")
        if text:
            print(f"    {text}")
        for call in _tool_calls(message.metadata):  # an assistant's turn that called tools
            print(f"    calls {call}")
    return 0


def _tool_calls(metadata: Any) -> list[str]:
    """The tool calls an `llm` node's turn holds, as `name(arguments)`."""
    calls = metadata.get("tool_calls") if isinstance(metadata, dict) else None
    if not isinstance(calls, list):
        return []
    shown = []
    for call in calls:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        shown.append(f"{function.get('name', '?')}({function.get('arguments', '')})")
    return shown


def _threads(args: argparse.Namespace) -> int:
    from flowstore.store import open_store

    async def read() -> Any:
        async with await open_store(reading_store(args.url)) as store:
            return await store.list_threads(limit=args.limit)

    found = asyncio.run(read())
    if args.json:
        print_json(
            [
                {"thread": thread_id, "messages": count, "last_message_at": last}
                for thread_id, count, last in found
            ]
        )
        return 0
    print(f"{'thread':<40}{'messages':>9}  last")
    for thread_id, count, last in found:
        print(f"{thread_id:<40}{count:>9}  {last.strftime('%Y-%m-%d %H:%M:%S')}")
    return 0


def _entities(args: argparse.Namespace) -> int:
    from flowstore.errors import InvalidValue
    from flowstore.store import open_store

    where: dict[str, Any] = {}
    for condition in args.where:
        key, sep, value = condition.partition("=")
        if not sep or not key:
            raise InvalidValue(f"--where takes KEY=VALUE, not {condition!r}")
        try:
            where[key] = json.loads(value)
        except json.JSONDecodeError:
            where[key] = value
        if not isinstance(where[key], str | int | float | bool):
            raise InvalidValue(f"--where {key}: compare with a string, number or boolean")

    async def read() -> Any:
        async with await open_store(reading_store(args.url)) as store:
            return await store.find_entities(
                args.namespace, where=where or None, name_prefix=args.name, limit=args.limit
            )

    found = asyncio.run(read())
    if args.json:
        print_json([dataclasses.asdict(entity) for entity in found])
        return 0
    print(f"{'namespace':<16}{'name':<24}{'version':>8}  {'updated':<20} attributes")
    for entity in found:
        updated = entity.updated_at.strftime("%Y-%m-%d %H:%M:%S")
        attributes = json.dumps(entity.attributes, default=str, sort_keys=True)
        print(
            f"{entity.namespace:<16}{entity.name:<24}{entity.version:>8}  {updated:<20} "
            f"{attributes}"
        )
    return 0
