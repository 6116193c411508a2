"""Conversation messages by thread, and entities with their history."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, delete, func, or_, select
from sqlalchemy.engine import Connection

from flowstore.store.records import (
    Entity,
    EntityChange,
    EntityVersion,
    MemoryChange,
    Message,
    MessageChange,
    NewMessage,
    RunId,
)
from flowstore.store.repositories._common import Encoder
from flowstore.store.schema import entities, entity_history, messages

__all__ = [
    "append_messages",
    "apply_change",
    "list_threads",
    "delete_entity",
    "delete_thread",
    "entity_history_of",
    "find_entities",
    "get_entity",
    "read_messages",
    "upsert_entity",
]

AttributeValue = str | int | float | bool


def apply_change(
    conn: Connection, run_id: RunId, change: MemoryChange, *, now: datetime, encode: Encoder
) -> None:
    """Apply a memory change that a run commits with its transitions."""
    if isinstance(change, MessageChange):
        append_messages(
            conn,
            change.thread_id,
            change.messages,
            now=now,
            encode=encode,
            ttl_seconds=change.ttl_seconds,
            keep_last=change.keep_last,
        )
    elif isinstance(change, EntityChange):
        upsert_entity(
            conn,
            change.namespace,
            change.name,
            change.attributes,
            merge=change.merge,
            run_id=run_id,
            now=now,
            encode=encode,
        )
    else:
        conn.execute(delete(messages).where(messages.c.run_id == change.run_id))


def append_messages(
    conn: Connection,
    thread_id: str,
    new: Sequence[NewMessage],
    *,
    now: datetime,
    encode: Encoder,
    ttl_seconds: float | None = None,
    keep_last: int | None = None,
) -> list[Message]:
    """Append messages to a thread, in order; return them with their ids.

    With `ttl_seconds` they are read no more after that long (and deleted by the next
    append to the thread); with `keep_last`, the thread keeps only its last that many.
    """
    if not new:
        return []
    expires_at = None if ttl_seconds is None else now + timedelta(seconds=ttl_seconds)
    rows = [
        {
            "thread_id": thread_id,
            "role": message.role,
            "content": encode(message.content, what=f"message content in thread {thread_id!r}"),
            "metadata": None
            if message.metadata is None
            else encode(message.metadata, what=f"message metadata in thread {thread_id!r}"),
            "run_id": message.run_id,
            "node": message.node,
            "tokens": message.tokens,
            "created_at": now,
            "expires_at": expires_at,
        }
        for message in new
    ]
    result = conn.execute(
        messages.insert().returning(messages.c.id, sort_by_parameter_order=True), rows
    )
    ids = list(result.scalars())
    conn.execute(
        delete(messages).where(messages.c.thread_id == thread_id, messages.c.expires_at <= now)
    )
    if keep_last is not None:
        oldest_kept = (
            select(messages.c.id)
            .where(messages.c.thread_id == thread_id)
            .order_by(messages.c.id.desc())
            .offset(keep_last - 1)
            .limit(1)
            .scalar_subquery()
        )
        conn.execute(
            delete(messages).where(messages.c.thread_id == thread_id, messages.c.id < oldest_kept)
        )
    return [
        Message(
            id=message_id,
            thread_id=thread_id,
            role=message.role,
            content=message.content,
            metadata=message.metadata,
            run_id=message.run_id,
            node=message.node,
            tokens=message.tokens,
            created_at=now,
        )
        for message_id, message in zip(ids, new, strict=True)
    ]


def read_messages(
    conn: Connection,
    thread_id: str,
    *,
    limit: int | None,
    before_id: int | None,
    now: datetime,
) -> list[Message]:
    """The thread's live messages in order; with `limit`, the latest that many (before
    `before_id`)."""
    stmt = select(*_MESSAGE_COLUMNS).where(
        messages.c.thread_id == thread_id,
        or_(messages.c.expires_at.is_(None), messages.c.expires_at > now),
    )
    if before_id is not None:
        stmt = stmt.where(messages.c.id < before_id)
    stmt = stmt.order_by(messages.c.id.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    rows = [Message.from_row(row) for row in (conn.execute(stmt)).mappings()]
    rows.reverse()
    return rows


_MESSAGE_COLUMNS = [column for column in messages.c if column.name != "expires_at"]


def list_threads(conn: Connection, *, limit: int) -> list[tuple[str, int, datetime]]:
    """Threads with their message count and last message time, latest first."""
    last = func.max(messages.c.created_at).label("last")
    stmt = (
        select(messages.c.thread_id, func.count().label("count"), last)
        .group_by(messages.c.thread_id)
        .order_by(last.desc())
        .limit(limit)
    )
    return [(row[0], int(row[1]), row[2]) for row in conn.execute(stmt)]


def delete_thread(conn: Connection, thread_id: str) -> int:
    """Delete a thread's messages; return how many."""
    result = conn.execute(delete(messages).where(messages.c.thread_id == thread_id))
    return int(result.rowcount)


def upsert_entity(
    conn: Connection,
    namespace: str,
    name: str,
    attributes: Mapping[str, Any],
    *,
    merge: bool,
    run_id: RunId | None,
    now: datetime,
    encode: Encoder,
) -> Entity:
    """Create or change an entity; with `merge`, new attributes are laid over the old ones.

    The row is read under the caller's write transaction (BEGIN IMMEDIATE on SQLite, a row
    lock on PostgreSQL), so concurrent merges do not lose each other's attributes.
    """
    current = (
        (
            conn.execute(
                select(entities)
                .where(entities.c.namespace == namespace, entities.c.name == name)
                .with_for_update()
            )
        )
        .mappings()
        .first()
    )
    merged = {**current["attributes"], **attributes} if current and merge else dict(attributes)
    encoded = encode(merged, what=f"attributes of entity {namespace}/{name}")
    if current is None:
        version, created_at = 1, now
        conn.execute(
            entities.insert().values(
                namespace=namespace,
                name=name,
                attributes=encoded,
                version=version,
                created_at=now,
                updated_at=now,
            )
        )
    else:
        version, created_at = current["version"] + 1, current["created_at"]
        conn.execute(
            entities.update()
            .where(entities.c.namespace == namespace, entities.c.name == name)
            .values(attributes=encoded, version=version, updated_at=now)
        )
    conn.execute(
        entity_history.insert().values(
            namespace=namespace,
            name=name,
            version=version,
            attributes=encoded,
            run_id=run_id,
            changed_at=now,
        )
    )
    return Entity(namespace, name, merged, version, created_at, now)


def get_entity(conn: Connection, namespace: str, name: str) -> Entity | None:
    """The entity, or None."""
    stmt = select(entities).where(entities.c.namespace == namespace, entities.c.name == name)
    row = (conn.execute(stmt)).mappings().first()
    return None if row is None else Entity.from_row(row)


def _attribute_equals(key: str, value: AttributeValue) -> ColumnElement[bool]:
    # json_extract on SQLite and ->> on PostgreSQL, cast to the value's own type.
    element = entities.c.attributes[key]
    comparison: ColumnElement[bool]
    if isinstance(value, bool):
        comparison = element.as_boolean() == value
    elif isinstance(value, int):
        comparison = element.as_integer() == value
    elif isinstance(value, float):
        comparison = element.as_float() == value
    else:
        comparison = element.as_string() == value
    return comparison


def find_entities(
    conn: Connection,
    namespace: str | None,
    *,
    where: Mapping[str, AttributeValue] | None,
    name_prefix: str | None,
    limit: int,
) -> list[Entity]:
    """Entities of a namespace (None: of all) whose attributes equal every value in `where`,
    by namespace and name."""
    stmt = select(entities)
    if namespace is not None:
        stmt = stmt.where(entities.c.namespace == namespace)
    for key, value in (where or {}).items():
        stmt = stmt.where(_attribute_equals(key, value))
    if name_prefix is not None:
        stmt = stmt.where(entities.c.name.startswith(name_prefix, autoescape=True))
    stmt = stmt.order_by(entities.c.namespace, entities.c.name).limit(limit)
    return [Entity.from_row(row) for row in (conn.execute(stmt)).mappings()]


def entity_history_of(conn: Connection, namespace: str, name: str) -> list[EntityVersion]:
    """Every version of the entity's attributes, oldest first."""
    stmt = (
        select(entity_history)
        .where(entity_history.c.namespace == namespace, entity_history.c.name == name)
        .order_by(entity_history.c.version)
    )
    return [EntityVersion.from_row(row) for row in (conn.execute(stmt)).mappings()]


def delete_entity(conn: Connection, namespace: str, name: str) -> bool:
    """Delete the entity and its history."""
    result = conn.execute(
        delete(entities).where(entities.c.namespace == namespace, entities.c.name == name)
    )
    return bool(result.rowcount == 1)
