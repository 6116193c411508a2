"""Conversation and entity memory, as nodes and applications use it.

```python
@flow.node
async def reply(question: str, ctx: NodeContext) -> str:
    thread = ctx.memory.thread(ctx.inputs["user"])
    history = await thread.window(max_tokens=2_000)
    await thread.append("user", question)
    ...
    await thread.append("assistant", answer)
    await ctx.memory.entities("people").upsert(ctx.inputs["user"], {"last_topic": topic})
    return answer
```

Inside a node (`NodeContext.memory`) writes are staged, and committed in the same transaction
as the node's success: memory is never ahead of the run (a node that fails, or a process that
dies, leaves nothing behind) nor behind it (a node that succeeded never runs again, so its
messages are never written twice). The node reads its own staged writes. Outside runs
(`Engine.memory`) writes are committed at once.

Threads hold ordered messages (role, content, metadata, token count). `window` picks the
latest messages by count or by token budget, and can summarize the older ones with a hook.
Entities are keyed by namespace and name, with JSON attributes, upsert and merge, a history of
every version, and lookup by name prefix or attribute values. The workflow's `MemoryConfig`
limits threads (`max_messages`, `max_message_bytes`, `message_ttl`, `clear_after_run`).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from flowstore.definition.spec import MemoryConfig
from flowstore.errors import ExecutionError, InvalidValue
from flowstore.store import serde
from flowstore.store.protocol import MemoryStore
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

__all__ = ["Entities", "Memory", "MemoryStage", "Thread", "estimate_tokens"]

Summarize = Callable[[list[Message]], Awaitable[str]]
"""Turns the messages a window leaves out into one summary text."""

AttributeValue = str | int | float | bool


def estimate_tokens(content: Any) -> int:
    """A token count for a message that was given none: about four characters per token."""
    text = content if isinstance(content, str) else str(content)
    return max(1, math.ceil(len(text) / 4))


@dataclass
class MemoryStage:
    """The memory writes of one node attempt, committed with its success.

    Attributes:
        run_id: The run.
        node: The node.
        key: The node execution's key.
        config: The workflow's memory limits.
    """

    run_id: RunId
    node: str
    key: str
    config: MemoryConfig
    # In order: a run of appends to one thread, or an entity change.
    _writes: list[tuple[str, list[NewMessage]] | EntityChange] = field(default_factory=list)

    def clear(self) -> None:
        """Forget what was staged (a new attempt starts)."""
        self._writes.clear()

    def add_message(self, thread_id: str, message: NewMessage) -> None:
        """Stage a message; appends in a row to one thread become one change."""
        last = self._writes[-1] if self._writes else None
        if isinstance(last, tuple) and last[0] == thread_id:
            last[1].append(message)
        else:
            self._writes.append((thread_id, [message]))

    def add_entity(self, change: EntityChange) -> None:
        """Stage an entity change."""
        self._writes.append(change)

    def changes(self) -> list[MemoryChange]:
        """The staged writes as changes to commit, in order."""
        return [
            write
            if isinstance(write, EntityChange)
            else MessageChange(
                write[0],
                tuple(write[1]),
                node=self.node,
                key=self.key,
                ttl_seconds=self.config.message_ttl,
                keep_last=self.config.max_messages,
            )
            for write in self._writes
        ]

    def messages_of(self, thread_id: str) -> list[NewMessage]:
        """The messages staged for a thread, in order."""
        return [
            message
            for write in self._writes
            if isinstance(write, tuple) and write[0] == thread_id
            for message in write[1]
        ]

    def entity_changes(self, namespace: str, name: str) -> list[EntityChange]:
        """The changes staged for an entity, in order."""
        return [
            write
            for write in self._writes
            if isinstance(write, EntityChange)
            and (write.namespace, write.name) == (namespace, name)
        ]


class Memory:
    """Conversation threads and entities: `Engine.memory`, or `NodeContext.memory` in a node."""

    def __init__(
        self, store: MemoryStore, config: MemoryConfig, stage: MemoryStage | None = None
    ) -> None:
        self._store = store
        self._config = config
        self._stage = stage

    def thread(self, thread_id: str) -> Thread:
        """A conversation thread (created by its first message)."""
        _check_name("thread id", thread_id)
        return Thread(thread_id, self._store, self._config, self._stage)

    def entities(self, namespace: str) -> Entities:
        """The entities of a namespace."""
        _check_name("namespace", namespace)
        return Entities(namespace, self._store, self._stage)


class Thread:
    """One conversation thread."""

    def __init__(
        self, thread_id: str, store: MemoryStore, config: MemoryConfig, stage: MemoryStage | None
    ) -> None:
        self.thread_id = thread_id
        self._store = store
        self._config = config
        self._stage = stage

    async def append(
        self,
        role: str,
        content: Any,
        *,
        metadata: Any = None,
        tokens: int | None = None,
    ) -> None:
        """Append a message (in a node: committed with the node's success).

        `tokens` defaults to an estimate (`estimate_tokens`); pass your model's count.

        Raises:
            InvalidValue: The role is empty or too long, the content or metadata has no JSON
                form, or the content is larger than `MemoryConfig.max_message_bytes`.
        """
        if not role or len(role) > 50:
            raise InvalidValue(f"a message's role must be 1 to 50 characters, not {role!r}")
        where = f"thread {self.thread_id!r}" + (
            f" (node {self._stage.node!r})" if self._stage else ""
        )
        encoded = self._store.encode(content, what=f"message content in {where}")
        if len(encoded.encode()) > self._config.max_message_bytes:
            raise InvalidValue(
                f"a message of {len(encoded.encode()):,} bytes in {where} is larger than "
                f"memory.max_message_bytes ({self._config.max_message_bytes:,})"
            )
        message = NewMessage(
            role,
            encoded,
            None if metadata is None else self._store.encode(metadata, what=f"metadata in {where}"),
            run_id=None if self._stage is None else self._stage.run_id,
            node=None if self._stage is None else self._stage.node,
            tokens=estimate_tokens(content) if tokens is None else tokens,
        )
        if self._stage is None:
            await self._store.append_messages(
                self.thread_id,
                [message],
                ttl_seconds=self._config.message_ttl,
                keep_last=self._config.max_messages,
            )
            return
        self._stage.add_message(self.thread_id, message)

    async def messages(self, *, limit: int | None = None) -> list[Message]:
        """The thread's messages in order (the latest `limit`), with those this node staged
        (their `id` is 0 until committed)."""
        stored = await self._store.read_messages(self.thread_id, limit=limit)
        staged = [] if self._stage is None else self._stage.messages_of(self.thread_id)
        now = datetime.now(UTC)
        messages = stored + [self._staged_message(new, now) for new in staged]
        return messages if limit is None else messages[-limit:]

    async def window(
        self,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        summarize: Summarize | None = None,
    ) -> list[Message]:
        """The latest messages that fit both limits, in order, read newest first (a window
        of a long thread reads only what it keeps).

        With `summarize`, the messages left out are summarized by it into one message of
        role `summary`, put first (it is not stored).
        """
        kept: list[Message] = []
        budget = max_tokens
        full = False
        if max_messages == 0:
            return []
        async for message in self._newest_first(page=max_messages or 100):
            cost = message.tokens or estimate_tokens(message.content)
            if budget is not None:
                if cost > budget:
                    full = True
                    break
                budget -= cost
            kept.append(message)
            if max_messages is not None and len(kept) >= max_messages:
                full = True  # older messages may be left: `summarize` looks
                break
        kept.reverse()
        if summarize is None or not full:
            return kept
        older = await self.messages()
        left_out = older[: len(older) - len(kept)]
        if not left_out:
            return kept
        text = await summarize(left_out)
        summary = Message(
            0,
            self.thread_id,
            "summary",
            text,
            {"summarizes": len(left_out)},
            None,
            None,
            estimate_tokens(text),
            left_out[-1].created_at,
        )
        return [summary, *kept]

    async def _newest_first(self, page: int = 100) -> AsyncIterator[Message]:
        """The thread's messages from the newest: this node's staged ones, then pages."""
        staged = [] if self._stage is None else self._stage.messages_of(self.thread_id)
        now = datetime.now(UTC)
        for new in reversed(staged):
            yield self._staged_message(new, now)
        before = None
        while True:
            stored = await self._store.read_messages(self.thread_id, limit=page, before_id=before)
            for message in reversed(stored):
                yield message
            if len(stored) < page:
                return
            before = stored[0].id

    def _staged_message(self, new: NewMessage, now: datetime) -> Message:
        return Message(
            0,
            self.thread_id,
            new.role,
            serde.plain(new.content),
            serde.plain(new.metadata),
            new.run_id,
            new.node,
            new.tokens,
            now,
        )

    async def clear(self) -> int:
        """Delete the thread's messages; return how many (outside runs only)."""
        if self._stage is not None:
            raise ExecutionError(
                f"node {self._stage.node!r} cannot clear thread {self.thread_id!r}: a run's "
                "nodes append to memory; clear it from the engine, or set "
                "memory.clear_after_run"
            )
        return await self._store.delete_thread(self.thread_id)


class Entities:
    """The entities of one namespace."""

    def __init__(self, namespace: str, store: MemoryStore, stage: MemoryStage | None) -> None:
        self.namespace = namespace
        self._store = store
        self._stage = stage

    async def upsert(self, name: str, attributes: Mapping[str, Any], *, merge: bool = True) -> None:
        """Create the entity or change it: `merge` lays `attributes` over the current ones,
        else they replace them. Every version is kept in its history."""
        _check_name("entity name", name)
        if not isinstance(attributes, Mapping):
            raise InvalidValue(f"entity {self.namespace}/{name}: attributes must be a mapping")
        encoded = self._store.encode(
            dict(attributes), what=f"attributes of entity {self.namespace}/{name}"
        )
        if self._stage is None:
            await self._store.upsert_entity(self.namespace, name, attributes, merge=merge)
            return
        self._stage.add_entity(
            EntityChange(
                self.namespace,
                name,
                serde.plain(encoded),
                merge=merge,
                node=self._stage.node,
                key=self._stage.key,
            )
        )

    async def get(self, name: str) -> Entity | None:
        """The entity, with this node's staged changes laid over it, or None."""
        entity = await self._store.get_entity(self.namespace, name)
        for change in self._staged(name):
            now = datetime.now(UTC)
            base = entity.attributes if entity is not None and change.merge else {}
            entity = Entity(
                self.namespace,
                name,
                {**base, **change.attributes},
                (entity.version if entity is not None else 0) + 1,
                entity.created_at if entity is not None else now,
                now,
            )
        return entity

    async def find(
        self,
        *,
        where: Mapping[str, AttributeValue] | None = None,
        name_prefix: str | None = None,
        limit: int = 100,
    ) -> list[Entity]:
        """Entities whose attributes equal every value in `where` (and whose name starts
        with `name_prefix`), by name, as stored."""
        return await self._store.find_entities(
            self.namespace, where=where, name_prefix=name_prefix, limit=limit
        )

    async def history(self, name: str) -> list[EntityVersion]:
        """Every stored version of the entity's attributes, oldest first."""
        return await self._store.entity_history(self.namespace, name)

    async def delete(self, name: str) -> bool:
        """Delete the entity and its history (outside runs only)."""
        if self._stage is not None:
            raise ExecutionError(
                f"node {self._stage.node!r} cannot delete entity {self.namespace}/{name}: "
                "delete it from the engine"
            )
        return await self._store.delete_entity(self.namespace, name)

    def _staged(self, name: str) -> Sequence[EntityChange]:
        return () if self._stage is None else self._stage.entity_changes(self.namespace, name)


def _check_name(what: str, value: str) -> None:
    if not isinstance(value, str) or not value or len(value) > 200:
        raise InvalidValue(f"a {what} must be a string of 1 to 200 characters, not {value!r}")
