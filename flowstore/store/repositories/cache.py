"""Cached node outputs, shared by every run, worker and restart."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, or_, select
from sqlalchemy.engine import Connection

from flowstore.store import prepared
from flowstore.store.records import CacheEntry
from flowstore.store.repositories._common import Encoder, upsert
from flowstore.store.schema import cache_entries

__all__ = ["clear_cache", "get_cached", "put_cached"]


def get_cached(conn: Connection, key: str, *, now: datetime) -> CacheEntry | None:
    """The entry under `key`, unless it has expired."""
    # A lookup is on the path of every cached node: straight to the driver on SQLite.
    rows = prepared.select_rows(conn, _GET, {"c_key": key, "c_now": now})
    return CacheEntry(*rows[0]) if rows else None


_GET = select(
    cache_entries.c.key,
    cache_entries.c.workflow,
    cache_entries.c.node,
    cache_entries.c.value,
    cache_entries.c.created_at,
    cache_entries.c.expires_at,
).where(
    cache_entries.c.key == bindparam("c_key"),
    or_(
        cache_entries.c.expires_at.is_(None),
        cache_entries.c.expires_at > bindparam("c_now", type_=cache_entries.c.expires_at.type),
    ),
)


def put_cached(
    conn: Connection,
    key: str,
    *,
    workflow: str,
    node: str,
    value: Any,
    ttl_seconds: float | None,
    now: datetime,
    encode: Encoder,
) -> CacheEntry:
    """Store `value` under `key`, replacing what was there."""
    expires_at = None if ttl_seconds is None else now + timedelta(seconds=ttl_seconds)
    stmt = upsert(conn, cache_entries).values(
        key=key,
        workflow=workflow,
        node=node,
        value=encode(value, what=f"cached output of node {node!r} in workflow {workflow!r}"),
        created_at=now,
        expires_at=expires_at,
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[cache_entries.c.key],
            set_={
                name: stmt.excluded[name]
                for name in ("workflow", "node", "value", "created_at", "expires_at")
            },
        )
    )
    return CacheEntry(key, workflow, node, value, now, expires_at)


def clear_cache(
    conn: Connection,
    *,
    workflow: str | None,
    node: str | None,
    expired_only: bool,
    now: datetime,
) -> int:
    """Delete cache entries (of a workflow, of a node, or only expired ones); return how many."""
    stmt = delete(cache_entries)
    if workflow is not None:
        stmt = stmt.where(cache_entries.c.workflow == workflow)
    if node is not None:
        stmt = stmt.where(cache_entries.c.node == node)
    if expired_only:
        stmt = stmt.where(cache_entries.c.expires_at <= now)
    return int((conn.execute(stmt)).rowcount)
