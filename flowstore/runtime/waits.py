"""Durable waits inside a node: `ctx.sleep(...)` and `ctx.wait_for_signal(...)`.

**The rule.** A node that waits for a time or a signal not yet there stops, and its run is
stored `waiting` with no owner: no worker slot, no lease, no memory in any process. When the
wait is over (the time has come, the signal was sent, the wait timed out) any worker claims
the run, and the node **runs again from its start**, as LangGraph's `interrupt` does: each wait
it reaches again returns at once what it returned before (the same signal, taken once), so the
code after the last wait goes on. Code before a wait runs again each time: keep it free of
side effects, or give them `ctx.idempotency_key` (the same in every run of the node), or put
them in a node upstream. `ctx.waits_resumed` says how many waits the node reached before
this run of it (0 on its first), so the repeat is never silent.

Each wait is a row of `flowstore_waits` and a `wait` event in the run's log; a signal is taken
in the same transaction that records the wait's end, so it is taken once, whatever crashes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from flowstore.errors import ExecutionError, InvalidValue
from flowstore.store.protocol import RunStore
from flowstore.store.records import Change, RunId, Wait, WaitChange

__all__ = ["NO_DEFAULT", "NodeWaits", "RunWaits", "SignalTimeout"]

NO_DEFAULT: Any = object()
"""`wait_for_signal(..., default=NO_DEFAULT)`: a wait that times out fails the node."""


class SignalTimeout(ExecutionError, TimeoutError):
    """A wait for a signal timed out, and the node gave no default."""


class NodeWaits(BaseException):
    """Raised inside a node by a wait that is not over: the node stops and its run waits.

    A `BaseException`, so that the node's own `except Exception` does not catch it, and no
    retry, fallback or breaker counts it as a failure.

    Attributes:
        change: The wait to record (None when it is recorded already).
        wake_at: When the run is due again (None: only a signal wakes it).
        signal: The signal it waits for, if any.
    """

    def __init__(
        self, change: WaitChange | None, wake_at: datetime | None, signal: str | None = None
    ) -> None:
        super().__init__("the node waits")
        self.change = change
        self.wake_at = wake_at
        self.signal = signal


Commit = Callable[[Sequence[Change]], Awaitable[object]]


class RunWaits:
    """The waits of one run: what its nodes waited for before, and how they wait now."""

    def __init__(
        self,
        store: RunStore,
        run_id: RunId,
        commit: Commit,
        models: Mapping[str, Any] | None = None,
    ) -> None:
        self._models = models or {}
        self._store = store
        self._run_id = run_id
        self._commit = commit
        self._known: dict[tuple[str, str, int], Wait | WaitChange] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._reached: dict[tuple[str, str], int] = {}

    def load(self, waits: Sequence[Wait]) -> None:
        """What the run's nodes waited for before (read when the run is taken up again)."""
        for wait in waits:
            self._known[(wait.node, wait.exec_key, wait.seq)] = wait

    def node_starts(self, node: str, key: str) -> None:
        """A node (re)starts from its beginning: its waits are counted from the first."""
        self._counters[(node, key)] = 0
        self._reached[(node, key)] = sum(1 for (n, k, _) in self._known if n == node and k == key)

    def resumed(self, node: str, key: str) -> int:
        """How many waits the node reached before this run of it (0 on its first run)."""
        return self._reached.get((node, key), 0)

    def _next(self, node: str, key: str) -> int:
        seq = self._counters.get((node, key), 0) + 1
        self._counters[(node, key)] = seq
        return seq

    async def sleep(self, node: str, key: str, until: datetime) -> None:
        """Wait until `until` (see the module's rule)."""
        seq = self._next(node, key)
        known = self._known.get((node, key, seq))
        now = datetime.now(UTC)
        if known is None:
            if until <= now:
                return
            change = WaitChange(node, key, seq, "sleep", wake_at=until)
            self._known[(node, key, seq)] = change
            raise NodeWaits(change, until)
        if known.outcome is not None:
            return
        if known.wake_at is None or known.wake_at <= now:
            await self._end(known, "woke")
            return
        raise NodeWaits(None, known.wake_at)

    async def wait_for_signal(
        self,
        node: str,
        key: str,
        name: str,
        *,
        model: Any = None,
        timeout: float | None = None,  # noqa: ASYNC109  (a durable deadline, not a time limit)
        default: Any = NO_DEFAULT,
    ) -> Any:
        """Wait for a signal named `name` sent to the run, and return its payload (validated
        by `model`, by default the model the workflow declares for the signal); see the
        module's rule."""
        model = model if model is not None else self._models.get(name)
        seq = self._next(node, key)
        known = self._known.get((node, key, seq))
        if known is None:
            wake_at = None
            if timeout is not None:
                wake_at = datetime.now(UTC) + timedelta(seconds=timeout)
            known = WaitChange(node, key, seq, "signal", name=name, wake_at=wake_at)
            self._known[(node, key, seq)] = known
            fresh = True
        else:
            fresh = False
        if known.outcome == "timed_out":
            return self._timed_out(name, default)
        if known.outcome == "signalled":
            return self._validated(name, await self._payload(known.signal_id), model)
        signal = await self._store.next_signal(self._run_id, name)
        if signal is not None:
            payload = self._validated(name, signal.payload, model)  # refused: not taken
            await self._end(known, "signalled", signal.id)
            return payload
        if known.wake_at is not None and known.wake_at <= datetime.now(UTC):
            await self._end(known, "timed_out")
            return self._timed_out(name, default)
        raise NodeWaits(known if fresh else None, known.wake_at, name)  # type: ignore[arg-type]

    async def _end(
        self, wait: Wait | WaitChange, outcome: str, signal_id: int | None = None
    ) -> None:
        key = wait.exec_key if isinstance(wait, Wait) else wait.key
        ended = WaitChange(
            wait.node,
            key,
            wait.seq,
            wait.kind,
            name=wait.name,
            wake_at=wait.wake_at,
            outcome=outcome,
            signal_id=signal_id,
        )
        await self._commit([ended])
        self._known[(wait.node, key, wait.seq)] = ended

    async def _payload(self, signal_id: int | None) -> Any:
        for signal in await self._store.list_signals(self._run_id):
            if signal.id == signal_id:
                return signal.payload
        raise ExecutionError(f"run {self._run_id}: signal {signal_id} is gone")

    @staticmethod
    def _validated(name: str, payload: Any, model: Any) -> Any:
        if model is None:
            return payload
        try:
            return TypeAdapter(model).validate_python(payload)
        except ValidationError as error:
            raise InvalidValue(
                f"signal {name!r}: its payload is not a {getattr(model, '__name__', model)}: "
                f"{error.errors()[0]['msg']}; it was not taken"
            ) from None

    @staticmethod
    def _timed_out(name: str, default: Any) -> Any:
        if default is NO_DEFAULT:
            raise SignalTimeout(f"no signal {name!r} came before the wait timed out")
        return default
