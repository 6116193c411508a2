"""Following a run's events: live from the run's committer, else from the log in the database.

A run executing in this process numbers its changes itself as it makes them (`Committer`), and
hands them to its `LiveRun` at once, before they are committed: tokens and a node's own events
reach a reader in this process within microseconds. Everything else a reader is shown (a
node's output, the run's end) only once it is committed, so nobody acts on a result that a
failed commit never made durable. Everything else comes from the log: what was committed before a
reader started, and runs executing in other processes (polled, with a wake-up per commit on
PostgreSQL). `follow` joins both by sequence number, so a reader sees every event once, in
order, wherever it comes from.

A live reader that falls behind (`Subscription` holds at most `_HOLD` changes) is cut loose
and catches up from the log. If the run's owner loses its lease, changes it showed but never
committed may be replaced by the next owner's: a reader that saw any raises
`StreamInterrupted` with the last sequence number the log confirms.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flowstore.errors import RunNotFound
from flowstore.events import (
    CheckpointEvent,
    CustomEvent,
    NodeEvent,
    RunEvent,
    StreamEvent,
    StreamInterrupted,
    TokenEvent,
)
from flowstore.store import serde
from flowstore.store.protocol import Store
from flowstore.store.records import (
    MEMORY_EVENTS,
    UNSET,
    Change,
    CheckpointChange,
    ErrorChange,
    EventChange,
    LlmCallChange,
    MemoryClearChange,
    NodeChange,
    NodeStatus,
    RunChange,
    RunId,
    Transition,
    TransitionKind,
    WaitChange,
)

__all__ = ["LiveRun", "LiveRuns", "Subscription", "follow"]

_HOLD = 100_000
"""The most changes a live reader may hold unread before it is cut loose."""

_PAGE = 1_000
"""Rows read from the log at a time."""

Encode = Callable[[Any], Any]


class Subscription:
    """A reader's share of a run's live changes: (seq, change) pairs, in order."""

    def __init__(self) -> None:
        self.items: list[tuple[int, Change]] = []
        self.cut_loose = False
        self.interrupted = False
        self.confirmed = 0  # when interrupted: the last seq the run's owner committed here
        self.committed = 0  # the last seq the run's owner here has committed
        self.wake = asyncio.Event()

    def put(self, first_seq: int, changes: Sequence[Change]) -> None:
        if self.cut_loose:
            return
        if len(self.items) + len(changes) > _HOLD:
            self.items.clear()
            self.cut_loose = True
        else:
            self.items.extend(enumerate(changes, start=first_seq))
        self.wake.set()

    def commit(self, last_seq: int) -> None:
        self.committed = last_seq
        self.wake.set()

    def interrupt(self, confirmed: int) -> None:
        self.interrupted = True
        self.confirmed = confirmed
        self.wake.set()

    def take(self) -> list[tuple[int, Change]]:
        items, self.items = self.items, []
        self.wake.clear()
        return items


class LiveRun:
    """A run executing here, as its committer tells it (see `Committer`)."""

    def __init__(self, runs: LiveRuns, run_id: RunId) -> None:
        self._runs = runs
        self.run_id = run_id
        self.unconfirmed: Callable[[], list[tuple[int, Change]]] = list
        self.confirmed_seq = 0

    def publish(self, first_seq: int, changes: Sequence[Change]) -> None:
        """`changes` were numbered from `first_seq` and are on their way to the log."""
        if not self._runs.followed(self.run_id):  # the common case, once per token
            return
        for subscription in self._runs.subscriptions(self.run_id):
            subscription.put(first_seq, changes)

    def confirmed(self, last_seq: int) -> None:
        """The changes up to `last_seq` are committed."""
        self.confirmed_seq = last_seq
        if self._runs.followed(self.run_id):
            for subscription in self._runs.subscriptions(self.run_id):
                subscription.commit(last_seq)

    def interrupted(self) -> None:
        """The run stopped writing here before its last changes were committed."""
        for subscription in self._runs.subscriptions(self.run_id):
            subscription.interrupt(self.confirmed_seq)


class LiveRuns:
    """The runs executing in this process and the readers following runs, by run id."""

    def __init__(self) -> None:
        self._live: dict[RunId, LiveRun] = {}
        self._readers: dict[RunId, set[Subscription]] = {}

    def followed(self, run_id: RunId) -> bool:
        """Whether a reader follows the run."""
        return run_id in self._readers

    def subscriptions(self, run_id: RunId) -> Iterator[Subscription]:
        return iter(tuple(self._readers.get(run_id, ())))

    @contextlib.contextmanager
    def executing(self, run_id: RunId) -> Iterator[LiveRun]:
        """Register a run executing here for as long as the block runs."""
        live = self._live[run_id] = LiveRun(self, run_id)
        try:
            yield live
        finally:
            if self._live.get(run_id) is live:
                del self._live[run_id]

    @contextlib.contextmanager
    def subscribe(self, run_id: RunId) -> Iterator[Subscription]:
        """Follow the run's live changes, from those on their way to the log at this moment."""
        subscription = Subscription()
        live = self._live.get(run_id)
        if live is not None:
            subscription.committed = live.confirmed_seq
            for seq, change in live.unconfirmed():
                subscription.put(seq, [change])
        readers = self._readers.setdefault(run_id, set())
        readers.add(subscription)
        try:
            yield subscription
        finally:
            readers.discard(subscription)
            if not readers:
                self._readers.pop(run_id, None)

    def is_executing(self, run_id: RunId) -> bool:
        return run_id in self._live


async def follow(
    store: Store,
    runs: LiveRuns,
    run_id: RunId,
    *,
    after: int = 0,
    live: bool = True,
    poll_seconds: float = 0.05,
    executing: asyncio.Future[Any] | None = None,
) -> AsyncIterator[StreamEvent]:
    """The run's events after sequence number `after`, in order, each once; with `live`, until
    the run ends (the run may not exist yet), else what the log holds now.

    `executing` is the task executing the run here, if any: its failure (before the run
    could end) is raised here instead of waiting for an end that will not come.
    """
    with runs.subscribe(run_id) as subscription:
        async with store.watch(run_id, subscription.wake) as told:
            # Told of each commit: polling only guards against a lost notice.
            poll = poll_seconds * 20 if told else poll_seconds
            async for event in _follow(
                store, runs, run_id, subscription, after, live, executing, poll
            ):
                yield event


async def _follow(
    store: Store,
    runs: LiveRuns,
    run_id: RunId,
    subscription: Subscription,
    after: int,
    live: bool,
    executing: asyncio.Future[Any] | None,
    poll_seconds: float,
) -> AsyncIterator[StreamEvent]:
    encode = _encoder(store)
    if executing is not None:
        executing.add_done_callback(lambda _: subscription.wake.set())
    last = after
    shown_live = 0  # the highest seq shown before its commit
    held: list[tuple[int, Change]] = []  # live changes ahead of `last`
    from_log = True
    while True:
        if executing is not None and executing.done() and not from_log:
            executing.result()  # its error, if it failed
            from_log = True  # it ended the run: the end is in the log
        if from_log:
            async for event in _from_log(store, run_id, last):
                yield event
                last = event.seq
                if isinstance(event, RunEvent) and event.is_terminal:
                    return
            if not live:
                return
            from_log = False
        if subscription.interrupted:
            confirmed = subscription.confirmed
            if shown_live > confirmed:  # the log's next rows may be another owner's
                raise StreamInterrupted(
                    f"run {run_id} lost its owner here after showing events up to "
                    f"{shown_live}, of which it committed up to {confirmed}",
                    resume_after=confirmed,
                )
            subscription.interrupted = False
            held, from_log = [], True
            continue
        if subscription.cut_loose:
            subscription.cut_loose = False
            held, from_log = [], True
            continue
        held += subscription.take()
        shown = 0
        uncommitted = False  # the next change is shown once committed
        for seq, change in held:
            if seq <= last:
                shown += 1
                continue
            if seq > last + 1:
                break
            if seq > subscription.committed and not isinstance(change, EventChange):
                uncommitted = True
                break
            event = event_of_change(run_id, seq, change, encode)
            yield event
            last = shown_live = seq
            shown += 1
            if isinstance(event, RunEvent) and event.is_terminal:
                return
        held = held[shown:]
        if uncommitted:  # its commit, or the run's interruption, wakes the reader
            if not await _wait(subscription.wake, 1.0) and not runs.is_executing(run_id):
                held, from_log = [], True  # its owner here stopped: the log says what landed
        elif held:  # a gap: what is missing is in the log, or soon will be
            from_log = True
            if not shown:
                await _wait(subscription.wake, poll_seconds)
        elif runs.is_executing(run_id):
            # Everything arrives live; look at the log now and then all the same.
            from_log = not await _wait(subscription.wake, 1.0)
        else:  # executing elsewhere, or not yet: poll the log
            if await _has_ended(store, run_id, last):
                return
            await _wait(subscription.wake, poll_seconds)
            from_log = True


async def _has_ended(store: Store, run_id: RunId, last: int) -> bool:
    """Whether the run ended and its log holds nothing after `last` (a reader that started
    after the end)."""
    try:
        run = await store.get_run(run_id)
    except RunNotFound:
        return False  # not created yet
    return run.status.is_terminal and run.last_seq <= last


def _encoder(store: Store) -> Encode:
    def encode(value: Any) -> Any:
        return store.encode(value, what="output of the run")

    return encode


async def _wait(wake: asyncio.Event, seconds: float) -> bool:
    """Wait until `wake` is set or `seconds` pass; whether it was set."""
    try:
        await asyncio.wait_for(wake.wait(), seconds)
    except TimeoutError:
        return False
    return True


async def _from_log(store: Store, run_id: RunId, after: int) -> AsyncIterator[StreamEvent]:
    """What the log holds after `after`, page by page."""
    while True:
        rows = await store.read_transitions(run_id, after_seq=after, limit=_PAGE)
        outputs: Mapping[tuple[str, str], Any] = {}
        if any(_succeeded_node(row) for row in rows):  # their outputs, not the whole run's
            outputs = await store.read_outputs(run_id, after_seq=after)
        run_output = None
        if any(row.kind is TransitionKind.RUN and row.status == "succeeded" for row in rows):
            run_output = (await store.get_run(run_id)).output
        for row in rows:
            yield event_of_transition(row, outputs, run_output)
        if len(rows) < _PAGE:
            return
        after = rows[-1].seq


def _succeeded_node(row: Transition) -> bool:
    return row.kind is TransitionKind.NODE and row.status == NodeStatus.SUCCEEDED.value


def event_of_transition(
    row: Transition, outputs: Mapping[tuple[str, str], Any], run_output: Any
) -> StreamEvent:
    """The event of a row of the log (`outputs` of succeeded nodes, the run's `run_output`)."""
    common: dict[str, Any] = {"run_id": str(row.run_id), "seq": row.seq, "at": row.created_at}
    if row.kind is TransitionKind.RUN:
        status = row.status or ""
        return RunEvent.model_construct(
            **common,
            type="run",
            status=status,
            output=run_output if status == "succeeded" else None,
            error=row.payload if status == "failed" else None,
        )
    if row.kind is TransitionKind.NODE:
        assert row.node is not None
        return NodeEvent.model_construct(
            **common,
            type="node",
            node=row.node,
            key=row.key,
            status=row.status or "",
            attempt=row.attempt,
            output=outputs.get((row.node, row.key)) if _succeeded_node(row) else None,
            error=row.payload,
        )
    if row.kind is TransitionKind.EVENT:
        return _event(common, row.name or "", row.node, row.key, row.attempt, row.payload)
    return CheckpointEvent.model_construct(**common, type="checkpoint")


def _event(
    common: dict[str, Any],
    name: str,
    node: str | None,
    key: str,
    attempt: int | None,
    payload: Any,
) -> StreamEvent:
    """A token, or a custom event (the engine's own included)."""
    if name == "token" and node is not None:
        return TokenEvent.model_construct(
            **common, type="token", node=node, key=key, attempt=attempt, text=payload
        )
    return CustomEvent.model_construct(
        **common, type="event", name=name, node=node, key=key, attempt=attempt, payload=payload
    )


def event_of_change(run_id: RunId, seq: int, change: Change, encode: Encode) -> StreamEvent:
    """The event a change will be in the log, as its writer tells it before committing."""
    common: dict[str, Any] = {"run_id": str(run_id), "seq": seq, "at": datetime.now(UTC)}
    if isinstance(change, EventChange):
        payload = serde.plain(change.payload)
        return _event(common, change.name, change.node, change.key, change.attempt, payload)
    if isinstance(change, NodeChange):
        return NodeEvent.model_construct(
            **common,
            type="node",
            node=change.node,
            key=change.key,
            status=change.status.value,
            attempt=change.attempt,
            output=None if change.output is UNSET else serde.plain(change.output),
            error=None if change.error is UNSET else serde.plain(change.error),
        )
    if isinstance(change, RunChange):
        output = None
        if change.output is not UNSET and change.status.value == "succeeded":
            output = serde.plain(encode(change.output))
        return RunEvent.model_construct(
            **common,
            type="run",
            status=change.status.value,
            output=output,
            error=None if change.error is UNSET else serde.plain(change.error),
        )
    if isinstance(change, ErrorChange):
        summary = {"type": change.error_type, "message": change.message, "outcome": change.outcome}
        return CustomEvent.model_construct(
            **common,
            type="event",
            name="error",
            node=change.node,
            key=change.key,
            attempt=change.attempt,
            payload=summary,
        )
    if isinstance(change, CheckpointChange):
        return CheckpointEvent.model_construct(**common, type="checkpoint")
    if isinstance(change, WaitChange):
        return _event(common, "wait", change.node, change.key, None, change.summary())
    if isinstance(change, LlmCallChange):
        return _event(common, "llm_call", change.node, change.key, change.attempt, change.summary())
    node = None if isinstance(change, MemoryClearChange) else change.node
    return CustomEvent.model_construct(
        **common,
        type="event",
        name=MEMORY_EVENTS[type(change)],
        node=node,
        key="" if isinstance(change, MemoryClearChange) else change.key,
        attempt=None,
        payload=change.summary(),
    )
