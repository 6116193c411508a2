"""The committer: a run's changes go through the store in order, concurrent ones together."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence

from flowstore.runtime.redaction import Redactor
from flowstore.runtime.sealing import Sealer
from flowstore.runtime.streams import LiveRun
from flowstore.store.protocol import RunLog
from flowstore.store.records import (
    CacheEntry,
    Change,
    Claim,
    EventChange,
    LlmCallChange,
    MetricPoint,
    NewRun,
    Span,
)

__all__ = ["Committer", "Observer"]

Observer = Callable[[Sequence[Change]], None]
"""Told of every batch of changes once it is committed (progress output, tests)."""


_EMIT_HIGH_WATER = 10_000
"""Queued changes past which a node that emits waits for a commit (tokens outrunning SQL)."""


class Committer:
    """Commits a run's changes in order; changes that arrive during a commit share the next.

    `commit` waits until its changes are durable. With no commit in flight the caller commits
    itself, without a task or an extra turn of the event loop (a chain of nodes); the store
    commits it with the other runs' writes waiting then (one fsync for them all). `submit`
    (durability `batched`) queues changes and returns at once. Changes queued during a commit
    are committed together by a flush task once it ends. After a failed commit (a lost lease)
    nothing more is written, and every later call raises that failure. With a `redactor`,
    the errors among the changes lose their secrets before they are stored or shown; with a
    `sealer`, secret fields' values are stored encrypted (readers here see them clear).

    The committer numbers the changes itself, in the order they arrive, and the store checks
    that the log agrees. So a `live` run can show each change to its readers, with its final
    sequence number, the moment it arrives, before it is committed.

    With `create` (the planned run the claim is of: `Store.plan_run`), the first commit
    creates the run too, so a run executed at once is stored with its first start.
    """

    def __init__(
        self,
        store: RunLog,
        claim: Claim,
        observe: Observer | None,
        redactor: Redactor | None = None,
        live: LiveRun | None = None,
        create: NewRun | None = None,
        sealer: Sealer | None = None,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._create = create
        self._redactor = redactor
        self._live = live
        self._next_seq = claim.run.last_seq + 1
        self._committing: tuple[int, Sequence[Change]] = (self._next_seq, ())
        if live is not None:
            live.unconfirmed = self._unconfirmed
        self._claim = claim
        self._observe = observe
        self._pending: list[Change] = []
        self._metrics: list[MetricPoint] = []
        self._spans: list[Span] = []
        self._keys: list[str] = []
        self._waiters: list[asyncio.Future[Mapping[str, CacheEntry]]] = []
        self._busy = False
        self._flushing: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def commit(
        self,
        changes: Sequence[Change],
        metrics: Sequence[MetricPoint] = (),
        spans: Sequence[Span] = (),
        cache_keys: Sequence[str] = (),
    ) -> Mapping[str, CacheEntry]:
        """Commit `changes` (and the telemetry measured with them) after everything queued
        before them; return once durable, with the live cache entries of `cache_keys`."""
        self._raise_failure()
        changes = self._number(changes)
        if not self._busy:
            if not (changes or metrics or spans or cache_keys or self._create):
                return {}
            self._busy = True
            try:
                return await self._record(changes, metrics, spans, cache_keys)
            except BaseException as error:
                self._failure = error
                raise
            finally:
                self._hand_over()
        return await self._flushed(changes, metrics, spans, cache_keys)

    async def commit_behind(
        self, changes: Sequence[Change], metrics: Sequence[MetricPoint] = ()
    ) -> None:
        """`commit`, made by a flush task rather than by the caller: a caller cancelled while
        it waits (a node being stopped) abandons the wait, never the commit itself."""
        self._raise_failure()
        await self._flushed(self._number(changes), metrics, (), ())

    def _flushed(
        self,
        changes: Sequence[Change],
        metrics: Sequence[MetricPoint],
        spans: Sequence[Span],
        cache_keys: Sequence[str],
    ) -> asyncio.Future[Mapping[str, CacheEntry]]:
        """Queue numbered changes for a flush task (started if none runs); what it resolves
        with once they are durable."""
        waiter: asyncio.Future[Mapping[str, CacheEntry]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue(changes, metrics, spans)
        self._keys.extend(cache_keys)
        self._waiters.append(waiter)
        if not self._busy:
            self._busy = True
            self._flushing = asyncio.create_task(self._flush())
        return waiter

    def submit(
        self,
        changes: Sequence[Change],
        metrics: Sequence[MetricPoint] = (),
        spans: Sequence[Span] = (),
    ) -> None:
        """Queue `changes` for the next commit and return without waiting for it."""
        self._raise_failure()
        if not (changes or metrics or spans or self._create):
            return
        self._queue(self._number(changes), metrics, spans)
        if not self._busy:
            self._busy = True
            self._flushing = asyncio.create_task(self._flush())

    async def settle(self) -> None:
        """Wait until queued commits have ended, however they ended (the run is stopping)."""
        while self._flushing is not None:
            await asyncio.gather(self._flushing, return_exceptions=True)

    async def drain(self) -> None:
        """Wait until everything queued is committed."""
        await self.commit([])

    async def emit(self, change: EventChange | LlmCallChange) -> None:
        """Queue an event a node emits, in order with the run's changes (`NodeContext.emit`).

        A payload that cannot be stored fails the emitting node here, not a later commit. A
        node emitting faster than SQL stores waits for a commit once too much is queued.
        """
        if isinstance(change, EventChange) and change.name != "token":
            what = f"payload of event {change.name!r} of node {change.node!r}"
            payload = self._store.encode(change.payload, what=what)
            change = dataclasses.replace(change, payload=payload)
        self.submit([change])
        if len(self._pending) >= _EMIT_HIGH_WATER:
            await self.drain()

    def _number(self, changes: Sequence[Change]) -> Sequence[Change]:
        """Take `changes` in: their secrets out, their sequence numbers given, readers told."""
        if not changes:
            return changes
        if self._redactor is not None:
            changes = self._redactor.changes(changes)
        if self._live is not None:
            self._live.publish(self._next_seq, changes)
        self._next_seq += len(changes)
        return changes

    def _unconfirmed(self) -> list[tuple[int, Change]]:
        """The changes numbered but not yet committed, with their sequence numbers."""
        first, committing = self._committing
        numbered = list(enumerate(committing, start=first))
        return numbered + list(enumerate(self._pending, start=self._next_seq - len(self._pending)))

    def _queue(
        self, changes: Sequence[Change], metrics: Sequence[MetricPoint], spans: Sequence[Span]
    ) -> None:
        self._pending.extend(changes)
        self._metrics.extend(metrics)
        self._spans.extend(spans)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _record(
        self,
        batch: Sequence[Change],
        metrics: Sequence[MetricPoint],
        spans: Sequence[Span],
        keys: Sequence[str] = (),
    ) -> Mapping[str, CacheEntry]:
        # Everything numbered before `batch` has been committed or is in it (see `commit`).
        first = self._next_seq - len(batch) - len(self._pending)
        self._committing = (first, batch)
        try:
            result = await self._store.record_transitions(
                self._claim.run.id,
                self._claim.fencing,
                batch if self._sealer is None else self._sealer.changes(batch),
                metrics=metrics,
                spans=spans,
                cache_keys=keys,
                expected_seq=first if batch else None,
                create=self._create,
            )
            self._create = None
        except BaseException:
            if self._live is not None:
                self._live.interrupted()
            raise
        finally:
            self._committing = (self._next_seq, ())
        if self._live is not None and batch:
            self._live.confirmed(first + len(batch) - 1)
        if self._observe is not None and batch:
            self._observe(batch)
        return result.cached

    def _hand_over(self) -> None:
        """After a commit: start the next one if changes are waiting, else become idle."""
        if self._failure is not None:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_exception(self._failure)
            self._pending, self._waiters, self._metrics, self._spans = [], [], [], []
            self._keys = []
        if self._pending or self._waiters or self._metrics or self._spans:
            self._flushing = asyncio.create_task(self._flush())
        else:
            self._busy = False

    async def _flush(self) -> None:
        batch, waiters, metrics, spans = self._pending, self._waiters, self._metrics, self._spans
        keys, self._keys = self._keys, []
        self._pending, self._waiters, self._metrics, self._spans = [], [], [], []
        found: Mapping[str, CacheEntry] = {}
        try:
            if batch or metrics or spans or keys or self._create:
                found = await self._record(batch, metrics, spans, keys)
        except BaseException as error:
            self._failure = error
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
            if not isinstance(error, Exception):
                raise
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(found)
        finally:
            self._flushing = None
            self._hand_over()
