"""The Store contract, run unchanged against SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from flowstore.errors import (
    LargeValueWarning,
    LeaseLost,
    RunEnded,
    RunNotFound,
    UnserializableValue,
    ValueTooLarge,
)
from flowstore.store import (
    CheckpointChange,
    ErrorChange,
    ErrorReport,
    EventChange,
    MetricPoint,
    NewMessage,
    NewRun,
    NodeChange,
    NodeStatus,
    RunChange,
    RunId,
    RunQuery,
    RunRecord,
    RunStatus,
    Span,
    StoreSettings,
    TransitionKind,
    ValueLimits,
    WorkerId,
    WorkerInfo,
    open_store,
)
from flowstore.store.sql import SQLStore
from tests.conftest import FakeClock

A = WorkerId("worker-a")
B = WorkerId("worker-b")


@pytest.fixture
async def store(database_url: str, clock: FakeClock) -> AsyncIterator[SQLStore]:
    store = await open_store(StoreSettings(url=database_url, auto_upgrade=True), clock=clock)
    yield store
    await store.close()


def new_run(workflow: str = "triage", **overrides: object) -> NewRun:
    fields: dict[str, object] = {
        "workflow": workflow,
        "version": "1",
        "graph_hash": f"hash-{workflow}",
        "inputs": {"ticket": "disk full"},
        "spec": {"nodes": ["classify"]},
    }
    fields.update(overrides)
    return NewRun(**fields)  # type: ignore[arg-type]


class NotJSON:
    pass


# ------------------------------------------------------------------------ runs


async def test_a_queued_run_is_stored_with_its_first_transition(store: SQLStore) -> None:
    run = await store.create_run(new_run())

    assert run.status is RunStatus.QUEUED
    assert (run.fencing, run.last_seq, run.lease_owner) == (0, 1, None)
    assert await store.get_run(run.id) == run
    [created] = await store.read_transitions(run.id)
    assert (created.seq, created.kind, created.status) == (1, TransitionKind.RUN, "queued")


async def test_an_owned_run_starts_running_with_a_lease(store: SQLStore, clock: FakeClock) -> None:
    run = await store.create_run(new_run(owner=A, lease_seconds=10))

    assert run.status is RunStatus.RUNNING
    assert (run.fencing, run.lease_owner) == (1, A)
    assert run.lease_expires_at == clock.now + timedelta(seconds=10)
    assert await store.claim_run(B, lease_seconds=10) is None


async def test_an_unknown_run_is_reported_by_id(store: SQLStore) -> None:
    with pytest.raises(RunNotFound, match="nope"):
        await store.get_run(RunId("nope"))
    with pytest.raises(RunNotFound, match="nope"):
        await store.record_transitions(RunId("nope"), 1, [EventChange("x")])


async def test_runs_are_listed_newest_first_with_filters(store: SQLStore, clock: FakeClock) -> None:
    first = await store.create_run(new_run("triage"))
    clock.advance(1)
    second = await store.create_run(new_run("billing"))
    clock.advance(1)
    child = await store.create_run(new_run("triage", parent_run_id=first.id, owner=A))

    assert [r.id for r in await store.list_runs()] == [child.id, second.id, first.id]
    assert [r.id for r in await store.list_runs(RunQuery(workflow="triage"))] == [
        child.id,
        first.id,
    ]
    running = RunQuery(statuses=frozenset({RunStatus.RUNNING}))
    assert [r.id for r in await store.list_runs(running)] == [child.id]
    window = RunQuery(created_after=second.created_at, created_before=child.created_at)
    assert [r.id for r in await store.list_runs(window)] == [second.id]
    assert [r.id for r in await store.list_runs(RunQuery(parent_run_id=first.id))] == [child.id]
    assert len(await store.list_runs(RunQuery(limit=2))) == 2


async def test_errors_are_counted_by_workflow_node_type_and_outcome(store: SQLStore) -> None:
    run = await store.create_run(new_run("triage"))
    other = await store.create_run(new_run("billing"))
    found = ((run.id, "ValueError"), (run.id, "ValueError"), (other.id, "Oops"))
    await store.record_errors(
        [
            ErrorReport(run_id, "classify", kind, "bad", outcome="failed_run")
            for run_id, kind in found
        ]
    )

    rows = await store.error_stats()
    assert [(r.workflow, r.node, r.error_type, r.outcome, r.errors) for r in rows] == [
        ("triage", "classify", "ValueError", "failed_run", 2),
        ("billing", "classify", "Oops", "failed_run", 1),
    ]
    assert rows[0].last_seen is not None and rows[0].last_seen.tzinfo is not None
    assert [r.error_type for r in await store.error_stats(workflow="billing")] == ["Oops"]


async def test_runs_are_listed_page_after_page_and_by_the_start_of_their_id(
    store: SQLStore, clock: FakeClock
) -> None:
    made = []
    for i in range(7):
        made.append(await store.create_run(new_run("w", id=RunId(f"ab{i % 2}-{i}"))))
        if i % 3 == 2:
            clock.advance(1)  # some runs share a creation time: the id breaks the tie
    newest_first = [r.id for r in sorted(made, key=lambda r: (r.created_at, r.id), reverse=True)]

    pages, after = [], None
    while True:
        page = await store.list_runs(RunQuery(listed_after=after, limit=3))
        if not page:
            break
        pages.append([r.id for r in page])
        after = (page[-1].created_at, page[-1].id)
    assert pages == [newest_first[:3], newest_first[3:6], newest_first[6:]]

    odd = [run_id for run_id in newest_first if run_id.startswith("ab1")]
    assert [r.id for r in await store.list_runs(RunQuery(id_prefix="ab1"))] == odd
    assert await store.list_runs(RunQuery(id_prefix="ab_")) == []  # no wildcard
    assert len(await store.list_runs(RunQuery(id_prefix="AB"))) == 0  # case counts


# ------------------------------------------------------------------------ claims and leases


async def test_a_short_id_finds_exactly_the_runs_that_start_with_it(store: SQLStore) -> None:
    ids = ["ab%1", "ab_2", "ab/3", "abc", "abd", "AB4", "abé", "ab", "b"]
    for run_id in ids:
        await store.create_run(new_run(id=RunId(run_id)))

    assert await store.find_run_ids("ab") == ["ab", "ab%1", "ab/3", "ab_2", "abc", "abd", "abé"]
    # `%`, `_` and `/` are themselves, not wildcards or escapes; case counts.
    assert await store.find_run_ids("ab%") == ["ab%1"]
    assert await store.find_run_ids("ab_") == ["ab_2"]
    assert await store.find_run_ids("ab/") == ["ab/3"]
    assert await store.find_run_ids("AB") == ["AB4"]
    assert await store.find_run_ids("abé") == ["abé"]
    assert await store.find_run_ids("abc") == ["abc"]
    assert await store.find_run_ids("x") == []
    assert len(await store.find_run_ids("ab", limit=2)) == 2


async def test_a_claim_takes_the_highest_priority_oldest_run(
    store: SQLStore, clock: FakeClock
) -> None:
    low = await store.create_run(new_run())
    clock.advance(1)
    high = await store.create_run(new_run(priority=5))
    clock.advance(1)
    await store.create_run(new_run("other"))

    claim = await store.claim_run(A, lease_seconds=30, workflows=["triage"])
    assert claim is not None
    assert (claim.run.id, claim.fencing, claim.owner) == (high.id, 1, A)
    assert claim.run.status is RunStatus.RUNNING
    assert claim.lease_expires_at == clock.now + timedelta(seconds=30)
    logged = (await store.read_transitions(high.id))[-1]
    assert (logged.seq, logged.status, logged.payload) == (2, "running", {"owner": A, "fencing": 1})

    second = await store.claim_run(B, lease_seconds=30, workflows=["triage"])
    assert second is not None and second.run.id == low.id
    assert await store.claim_run(B, lease_seconds=30, workflows=["triage"]) is None


async def test_a_claim_orders_every_kind_of_claimable_run_by_priority_then_age(
    store: SQLStore, clock: FakeClock
) -> None:
    # Oldest first: a due waiting run, an expired lease, a queued run; then one of each
    # at a higher priority, created last.
    async def waiting(priority: int) -> RunRecord:
        run = await store.create_run(new_run(owner=A, priority=priority))
        wake_at = clock() + timedelta(seconds=1)
        await store.record_transitions(run.id, 1, [RunChange(RunStatus.WAITING, wake_at=wake_at)])
        return run

    order = []
    for priority in (0, 3):
        order.append(await waiting(priority))
        clock.advance(1)
        order.append(await store.create_run(new_run(owner=A, lease_seconds=1, priority=priority)))
        clock.advance(1)
        order.append(await store.create_run(new_run(priority=priority)))
        clock.advance(1)
    clock.advance(10)  # every lease expired, every wait due
    expected = [run.id for run in order[3:] + order[:3]]
    claimed = []
    while (claim := await store.claim_run(B, lease_seconds=60)) is not None:
        claimed.append(claim.run.id)
    assert claimed == expected


async def test_a_claim_can_target_one_run(store: SQLStore) -> None:
    await store.create_run(new_run())
    wanted = await store.create_run(new_run())

    claim = await store.claim_run(A, lease_seconds=30, run_id=wanted.id)
    assert claim is not None and claim.run.id == wanted.id
    assert await store.claim_run(B, lease_seconds=30, run_id=wanted.id) is None


async def test_an_expired_lease_is_claimed_with_a_higher_fencing_number(
    store: SQLStore, clock: FakeClock
) -> None:
    run = await store.create_run(new_run(owner=A, lease_seconds=10))
    clock.advance(5)
    assert await store.claim_run(B, lease_seconds=10) is None

    clock.advance(6)
    claim = await store.claim_run(B, lease_seconds=10)
    assert claim is not None
    assert (claim.run.id, claim.fencing, claim.owner) == (run.id, 2, B)


async def test_a_dead_workers_unexpired_lease_can_be_stolen(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A, lease_seconds=600))

    assert await store.claim_run(B, lease_seconds=10, steal_from=[WorkerId("other")]) is None
    claim = await store.claim_run(B, lease_seconds=10, steal_from=[A])
    assert claim is not None and (claim.run.id, claim.fencing) == (run.id, 2)


async def test_a_stale_fencing_number_writes_nothing_and_raises(
    store: SQLStore, clock: FakeClock
) -> None:
    run = await store.create_run(new_run(owner=A, lease_seconds=10))
    clock.advance(11)
    claim = await store.claim_run(B, lease_seconds=10)
    assert claim is not None
    before = await store.get_run(run.id)
    log_before = await store.read_transitions(run.id)

    with pytest.raises(LeaseLost, match=r"fencing number is 2.*carried 1"):
        await store.record_transitions(
            run.id,
            1,
            [
                NodeChange("classify", NodeStatus.SUCCEEDED, output="urgent"),
                RunChange(RunStatus.SUCCEEDED, output="stale"),
            ],
        )
    with pytest.raises(LeaseLost):
        await store.renew_lease(run.id, A, 1, lease_seconds=10)
    assert await store.release_lease(run.id, A, 1) is False

    assert await store.get_run(run.id) == before
    assert await store.read_transitions(run.id) == log_before
    assert await store.read_node_executions(run.id) == []


async def test_leases_are_renewed_and_released(store: SQLStore, clock: FakeClock) -> None:
    run = await store.create_run(new_run(owner=A, lease_seconds=10))
    clock.advance(8)
    expires = await store.renew_lease(run.id, A, 1, lease_seconds=10)
    assert expires == clock.now + timedelta(seconds=10)
    clock.advance(8)
    assert await store.claim_run(B, lease_seconds=10) is None

    assert await store.release_lease(run.id, A, 1) is True
    # Released, the run's fencing number moved on: nothing A still sends is accepted.
    with pytest.raises(LeaseLost):
        await store.record_transitions(run.id, 1, [NodeChange("classify", NodeStatus.RUNNING)])
    assert await store.release_lease(run.id, A, 1) is False
    claim = await store.claim_run(B, lease_seconds=10)
    assert claim is not None and (claim.run.id, claim.fencing) == (run.id, 3)


async def test_an_ended_run_is_never_claimed(store: SQLStore, clock: FakeClock) -> None:
    run = await store.create_run(new_run(owner=A, lease_seconds=10))
    await store.record_transitions(run.id, 1, [RunChange(RunStatus.SUCCEEDED, output=1)])
    clock.advance(60)
    assert await store.claim_run(B, lease_seconds=10) is None
    with pytest.raises(LeaseLost):
        await store.renew_lease(run.id, A, 1, lease_seconds=10)


async def test_an_ended_run_takes_no_more_writes(store: SQLStore) -> None:
    """A late write with the fencing number of the run's last owner cannot change its end."""
    run = await store.create_run(new_run(owner=A, lease_seconds=10))
    await store.record_transitions(run.id, 1, [RunChange(RunStatus.SUCCEEDED, output=42)])
    ended, log = await store.get_run(run.id), await store.read_transitions(run.id)

    with pytest.raises(LeaseLost, match="status succeeded"):
        await store.record_transitions(
            run.id,
            1,
            [
                NodeChange("classify", NodeStatus.RUNNING),
                RunChange(RunStatus.FAILED, error={"m": "late"}),
            ],
        )
    assert await store.end_run(run.id, 1, RunChange(RunStatus.CANCELLED)) is False
    assert await store.get_run(run.id) == ended
    assert await store.read_transitions(run.id) == log


async def test_end_run_ends_what_its_executor_left_in_flight(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A, lease_seconds=10))
    await store.record_transitions(
        run.id,
        1,
        [
            NodeChange("classify", NodeStatus.RUNNING, attempt=1),
            NodeChange("classify", NodeStatus.SUCCEEDED, output="urgent"),
            NodeChange("draft", NodeStatus.RUNNING, attempt=1),
        ],
    )
    assert await store.end_run(run.id, 2, RunChange(RunStatus.CANCELLED)) is False  # stale
    assert await store.end_run(run.id, 1, RunChange(RunStatus.CANCELLED)) is True

    ended = await store.get_run(run.id)
    assert (ended.status, ended.lease_owner) == (RunStatus.CANCELLED, None)
    nodes = {n.node: n.status for n in await store.read_node_executions(run.id)}
    assert nodes == {"classify": NodeStatus.SUCCEEDED, "draft": NodeStatus.CANCELLED}
    log = [(t.kind.value, t.node, t.status) for t in await store.read_transitions(run.id)]
    assert log[-2:] == [("node", "draft", "cancelled"), ("run", None, "cancelled")]
    assert await store.end_run(run.id, 1, RunChange(RunStatus.FAILED)) is False


# ------------------------------------------------------------------------ the transition log


async def test_a_batch_applies_and_logs_every_change_in_order(
    store: SQLStore, clock: FakeClock
) -> None:
    run = await store.create_run(new_run(owner=A))
    clock.advance(1)
    result = await store.record_transitions(
        run.id,
        1,
        [
            NodeChange("classify", NodeStatus.RUNNING, attempt=1, input={"ticket": "disk full"}),
            EventChange("token", {"text": "urg"}, node="classify"),
            NodeChange("classify", NodeStatus.SUCCEEDED, output="urgent"),
            CheckpointChange({"ready": ["draft"]}),
            NodeChange("draft", NodeStatus.SCHEDULED),
        ],
    )
    assert (result.first_seq, result.last_seq) == (2, 6)

    log = await store.read_transitions(run.id)
    assert [(t.seq, t.kind, t.node, t.status) for t in log] == [
        (1, TransitionKind.RUN, None, "running"),
        (2, TransitionKind.NODE, "classify", "running"),
        (3, TransitionKind.EVENT, "classify", None),
        (4, TransitionKind.NODE, "classify", "succeeded"),
        (5, TransitionKind.CHECKPOINT, None, None),
        (6, TransitionKind.NODE, "draft", "scheduled"),
    ]
    assert log[2].name == "token" and log[2].payload == {"text": "urg"}
    assert [t.seq for t in await store.read_transitions(run.id, after_seq=3, limit=2)] == [4, 5]

    by_node = {n.node: n for n in await store.read_node_executions(run.id)}
    classify = by_node["classify"]
    assert (classify.status, classify.attempt, classify.updated_seq) == (
        NodeStatus.SUCCEEDED,
        1,
        4,
    )
    assert (classify.input, classify.output) == ({"ticket": "disk full"}, "urgent")
    assert classify.started_at == classify.finished_at == clock.now
    assert by_node["draft"].status is NodeStatus.SCHEDULED
    assert by_node["draft"].output is None

    assert await store.read_outputs(run.id) == {("classify", ""): "urgent"}
    assert await store.read_outputs(run.id, at_seq=3) == {}
    assert await store.read_outputs(run.id, after_seq=3) == {("classify", ""): "urgent"}
    assert await store.read_outputs(run.id, after_seq=4) == {}
    checkpoint = await store.read_checkpoint(run.id)
    assert checkpoint is not None and (checkpoint.seq, checkpoint.state) == (
        5,
        {"ready": ["draft"]},
    )
    assert await store.read_checkpoint(run.id, at_seq=4) is None
    assert (await store.get_run(run.id)).last_seq == 6


async def test_a_node_that_runs_many_times_has_one_row_per_key(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A))
    changes = [
        NodeChange("fetch", NodeStatus.SUCCEEDED, key=f"map:{index}", attempt=1, output=index)
        for index in range(5)
    ]
    await store.record_transitions(run.id, 1, changes)

    outputs = await store.read_outputs(run.id)
    assert outputs == {("fetch", f"map:{index}"): index for index in range(5)}


async def test_large_batches_store_the_same_rows_as_small_ones(
    store: SQLStore, clock: FakeClock
) -> None:
    """Big batches take a bulk path on SQLite; what they store must not differ."""
    run = await store.create_run(new_run(owner=A))
    outputs: list[object] = [
        None,
        "",
        'it\'s "quoted" \\ and \u00e9\u00e8 \U0001f600',
        '{"looks": "like json"}',
        5,
        2.5,
        True,
        [1, [2, {"deep": None}]],
        {"nested": {"list": [1, 2], "none": None}},
        "null",
    ]
    names = [f"node-{index}" for index in range(len(outputs))]

    for batch_size in (1, len(names)):
        key = f"batch-{batch_size}"
        for start in range(0, len(names), batch_size):
            chunk = names[start : start + batch_size]
            await store.record_transitions(
                run.id,
                1,
                [
                    NodeChange(name, NodeStatus.RUNNING, key=key, attempt=1, input={"i": name})
                    for name in chunk
                ],
            )
        clock.advance(1)
        await store.record_transitions(
            run.id,
            1,
            [
                NodeChange(name, NodeStatus.SUCCEEDED, key=key, output=output)
                for name, output in zip(names, outputs, strict=True)
            ],
        )

    executions = await store.read_node_executions(run.id)
    by_key: dict[str, dict[str, object]] = {}
    for execution in executions:
        assert execution.status is NodeStatus.SUCCEEDED
        assert execution.input == {"i": execution.node}
        assert execution.finished_at is not None and execution.started_at is not None
        assert execution.finished_at - execution.started_at == timedelta(seconds=1)
        by_key.setdefault(execution.key, {})[execution.node] = execution.output
    assert by_key["batch-1"] == dict(zip(names, outputs, strict=True))
    assert by_key[f"batch-{len(names)}"] == by_key["batch-1"]
    log = await store.read_transitions(run.id)
    assert [t.seq for t in log] == list(range(1, len(log) + 1))
    assert {t.created_at for t in log[1:]} == {
        clock.now - timedelta(seconds=1),
        clock.now,
        clock.now - timedelta(seconds=2),
    }


async def test_a_retried_node_keeps_its_attempt_count_and_clears_its_error(
    store: SQLStore,
) -> None:
    run = await store.create_run(new_run(owner=A))
    await store.record_transitions(
        run.id,
        1,
        [
            NodeChange("draft", NodeStatus.RUNNING, attempt=1),
            NodeChange("draft", NodeStatus.FAILED, error={"type": "Timeout"}),
        ],
    )
    [failed] = await store.read_node_executions(run.id)
    assert (failed.status, failed.attempt, failed.error) == (
        NodeStatus.FAILED,
        1,
        {"type": "Timeout"},
    )
    assert (await store.read_transitions(run.id))[-1].payload == {"type": "Timeout"}

    await store.record_transitions(run.id, 1, [NodeChange("draft", NodeStatus.RUNNING, attempt=2)])
    await store.record_transitions(
        run.id, 1, [NodeChange("draft", NodeStatus.SUCCEEDED, output=None)]
    )
    [done] = await store.read_node_executions(run.id)
    assert (done.status, done.attempt, done.error, done.output) == (
        NodeStatus.SUCCEEDED,
        2,
        None,
        None,
    )
    assert await store.read_outputs(run.id) == {("draft", ""): None}


async def test_an_ended_run_records_its_output_and_drops_its_lease(
    store: SQLStore, clock: FakeClock
) -> None:
    run = await store.create_run(new_run(owner=A))
    clock.advance(2)
    await store.record_transitions(
        run.id, 1, [RunChange(RunStatus.FAILED, error={"type": "KeyError", "message": "x"})]
    )
    ended = await store.get_run(run.id)
    assert ended.status is RunStatus.FAILED
    assert ended.error == {"type": "KeyError", "message": "x"}
    assert (ended.finished_at, ended.lease_owner, ended.lease_expires_at) == (clock.now, None, None)


async def test_a_batch_is_all_or_nothing(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A))
    before = await store.get_run(run.id)

    with pytest.raises(UnserializableValue):
        await store.record_transitions(
            run.id,
            1,
            [
                NodeChange("classify", NodeStatus.SUCCEEDED, output="urgent"),
                EventChange("note", {"fine": True}),
                CheckpointChange({"ready": []}),
                NodeChange("draft", NodeStatus.SUCCEEDED, output={"bad": NotJSON()}),
                RunChange(RunStatus.SUCCEEDED, output="done"),
            ],
        )

    assert await store.get_run(run.id) == before
    assert [t.seq for t in await store.read_transitions(run.id)] == [1]
    assert await store.read_node_executions(run.id) == []
    assert await store.read_checkpoint(run.id) is None
    # The next batch takes the very next sequence number: the failed one left no gap.
    result = await store.record_transitions(run.id, 1, [EventChange("after")])
    assert result.first_seq == 2


async def test_an_unserializable_value_is_named_with_its_type_and_place(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A))
    with pytest.raises(UnserializableValue) as caught:
        await store.record_transitions(
            run.id,
            1,
            [NodeChange("draft", NodeStatus.SUCCEEDED, output={"items": [1, NotJSON()]})],
        )
    message = str(caught.value)
    assert "output of node 'draft'" in message
    assert "test_store_contract.NotJSON" in message
    assert "['items'][1]" in message


async def test_value_size_limits_warn_then_refuse(database_url: str, clock: FakeClock) -> None:
    limits = ValueLimits(warn_bytes=100, max_bytes=1000)
    settings = StoreSettings(url=database_url, auto_upgrade=True, value_limits=limits)
    async with await open_store(settings, clock=clock) as store:
        run = await store.create_run(new_run(owner=A))
        with pytest.warns(LargeValueWarning, match="output of node 'big'"):
            await store.record_transitions(
                run.id, 1, [NodeChange("big", NodeStatus.SUCCEEDED, output="x" * 500)]
            )
        with pytest.raises(ValueTooLarge, match=r"2,002 bytes as JSON, over the limit of 1,000"):
            await store.record_transitions(
                run.id, 1, [NodeChange("huge", NodeStatus.SUCCEEDED, output="x" * 2000)]
            )
        assert await store.read_outputs(run.id) == {("big", ""): "x" * 500}


async def test_sequence_numbers_stay_gapless_under_concurrent_writers(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A))
    rng = random.Random(7)
    sizes = [rng.randint(1, 8) for _ in range(120)]

    async def writer(index: int, size: int) -> tuple[int, int]:
        changes = [EventChange("tick", {"writer": index, "item": i}) for i in range(size)]
        result = await store.record_transitions(run.id, 1, changes)
        return result.first_seq, result.last_seq

    ranges = await asyncio.gather(*(writer(i, s) for i, s in enumerate(sizes)))

    log = await store.read_transitions(run.id)
    assert [t.seq for t in log] == list(range(1, 2 + sum(sizes)))
    covered = sorted(seq for first, last in ranges for seq in range(first, last + 1))
    assert covered == list(range(2, 2 + sum(sizes)))
    for (first, last), size in zip(ranges, sizes, strict=True):
        assert last - first + 1 == size
        payloads = [t.payload for t in log[first - 1 : last]]
        assert len({p["writer"] for p in payloads}) == 1, "a batch was interleaved"


# ------------------------------------------------------------------------ workers


async def test_a_heartbeat_renews_only_the_leases_it_names(
    store: SQLStore, clock: FakeClock
) -> None:
    a, b = (WorkerInfo(w, "host", 1, clock.now, clock.now) for w in (A, B))
    for worker in (a, b):
        await store.register_worker(worker)
    mine = await store.create_run(new_run(owner=A, lease_seconds=10))
    abandoned = await store.create_run(new_run(owner=A, lease_seconds=10))
    theirs = await store.create_run(new_run(owner=B, lease_seconds=10))
    clock.advance(8)

    # A names `mine` (and `theirs`, which it does not own, and a stale fencing number), and
    # a run it holds whose creating commit is still in flight: not stored yet, not lost.
    creating = store.plan_run(new_run(owner=A, lease_seconds=10))
    assert creating.id is not None
    leases = {mine.id: 1, theirs.id: 1, abandoned.id: 7, creating.id: 1}
    assert await store.heartbeat(a, leases=leases, lease_seconds=10) == {mine.id, creating.id}
    clock.advance(8)
    claimed = set()
    while (claim := await store.claim_run(WorkerId("c"), lease_seconds=10)) is not None:
        claimed.add(claim.run.id)
    # A's executor of `abandoned` stopped: a live A no longer keeps it.
    assert claimed == {abandoned.id, theirs.id}
    alive = await store.list_workers(heartbeat_since=clock.now - timedelta(seconds=9))
    assert [w.id for w in alive] == [A]
    # B's lease was taken over: its heartbeat renews nothing.
    assert await store.heartbeat(b, leases={theirs.id: 1}, lease_seconds=10) == frozenset()
    assert {w.id for w in await store.list_workers()} == {A, B}

    assert await store.remove_worker(A) is True
    assert [w.id for w in await store.list_workers()] == [B]
    released = await store.claim_run(WorkerId("c"), lease_seconds=10)
    assert released is not None and released.run.id == mine.id


async def test_a_heartbeat_forgets_silent_workers_and_rewrites_its_own_row(
    store: SQLStore, clock: FakeClock
) -> None:
    a, b = (WorkerInfo(w, "host", 1, clock.now, clock.now) for w in (A, B))
    await store.register_worker(b)
    clock.advance(100)
    # A's row was never written (or was forgotten): the heartbeat writes it again.
    await store.heartbeat(a, leases={}, lease_seconds=10, forget_after=60)
    assert [(w.id, w.heartbeat_at) for w in await store.list_workers()] == [(A, clock.now)]


# ------------------------------------------------------------------------ cache


async def test_cache_entries_expire_and_are_cleared(store: SQLStore, clock: FakeClock) -> None:
    await store.put_cached("k1", workflow="triage", node="draft", value={"a": 1}, ttl_seconds=60)
    await store.put_cached("k2", workflow="triage", node="classify", value="urgent")
    await store.put_cached("k3", workflow="billing", node="draft", value=[1], ttl_seconds=10)

    hit = await store.get_cached("k1")
    assert hit is not None and (hit.value, hit.node) == ({"a": 1}, "draft")
    assert hit.expires_at == clock.now + timedelta(seconds=60)
    assert await store.get_cached("missing") is None

    clock.advance(30)
    assert await store.get_cached("k3") is None
    assert await store.clear_cache(expired_only=True) == 1
    await store.put_cached("k1", workflow="triage", node="draft", value={"a": 2})
    replaced = await store.get_cached("k1")
    assert replaced is not None and (replaced.value, replaced.expires_at) == ({"a": 2}, None)

    assert await store.clear_cache(workflow="triage", node="classify") == 1
    assert await store.clear_cache() == 1
    assert await store.get_cached("k1") is None


# ------------------------------------------------------------------------ memory


async def test_a_thread_keeps_messages_in_order(store: SQLStore) -> None:
    run = await store.create_run(new_run())
    written = await store.append_messages(
        "t1",
        [
            NewMessage("user", "hello", run_id=run.id, node="model"),
            NewMessage("assistant", {"text": "hi"}, metadata={"model": "fake"}, tokens=2),
            NewMessage("user", "bye"),
        ],
    )
    await store.append_messages("t2", [NewMessage("user", "elsewhere")])
    assert written[0].id < written[1].id < written[2].id

    thread = await store.read_messages("t1")
    assert [(m.role, m.content) for m in thread] == [
        ("user", "hello"),
        ("assistant", {"text": "hi"}),
        ("user", "bye"),
    ]
    assert thread == written
    assert [m.content for m in await store.read_messages("t1", limit=2)] == [{"text": "hi"}, "bye"]
    older = await store.read_messages("t1", before_id=written[2].id, limit=1)
    assert [m.content for m in older] == [{"text": "hi"}]
    assert await store.append_messages("t1", []) == []

    assert await store.delete_thread("t1") == 3
    assert await store.read_messages("t1") == []


async def test_entities_merge_keep_history_and_are_found_by_attribute(
    store: SQLStore, clock: FakeClock
) -> None:
    run = await store.create_run(new_run())
    await store.upsert_entity("people", "ada", {"role": "admin", "age": 36, "active": True})
    clock.advance(1)
    merged = await store.upsert_entity("people", "ada", {"age": 37}, run_id=run.id)
    assert merged.attributes == {"role": "admin", "age": 37, "active": True}
    assert merged.version == 2 and merged.updated_at > merged.created_at
    await store.upsert_entity("people", "bob", {"role": "user", "age": 37, "active": False})
    replaced = await store.upsert_entity("people", "bob", {"role": "admin"}, merge=False)
    assert replaced.attributes == {"role": "admin"}

    assert await store.get_entity("people", "ada") == merged
    assert await store.get_entity("people", "nobody") is None
    history = await store.entity_history("people", "ada")
    assert [(v.version, v.attributes["age"], v.run_id) for v in history] == [
        (1, 36, None),
        (2, 37, run.id),
    ]

    admins = await store.find_entities("people", where={"role": "admin"})
    assert [e.name for e in admins] == ["ada", "bob"]
    assert [e.name for e in await store.find_entities("people", where={"age": 37})] == ["ada"]
    active = await store.find_entities("people", where={"active": True, "role": "admin"})
    assert [e.name for e in active] == ["ada"]
    assert [e.name for e in await store.find_entities("people", name_prefix="b")] == ["bob"]
    assert await store.find_entities("places") == []

    assert await store.delete_entity("people", "ada") is True
    assert await store.entity_history("people", "ada") == []
    assert await store.delete_entity("people", "ada") is False


# ------------------------------------------------------------------------ telemetry


async def test_error_reports_are_stored_and_filtered(store: SQLStore, clock: FakeClock) -> None:
    run = await store.create_run(new_run())
    await store.record_errors(
        [
            ErrorReport(
                run.id,
                "draft",
                "TimeoutError",
                "took too long",
                attempt=1,
                outcome="retried",
                traceback="Traceback ...",
                details={"timeout": 5},
            ),
        ]
    )
    clock.advance(60)
    await store.record_errors([ErrorReport(None, None, "KeyError", "'x'", outcome="failed_run")])

    [first] = await store.list_errors(run_id=run.id)
    assert (first.node, first.error_type, first.attempt, first.outcome) == (
        "draft",
        "TimeoutError",
        1,
        "retried",
    )
    assert first.details == {"timeout": 5} and first.traceback == "Traceback ..."
    recent = await store.list_errors(since=clock.now)
    assert [e.error_type for e in recent] == ["KeyError"]
    assert len(await store.list_errors()) == 2


async def test_an_error_change_is_reported_with_its_transitions(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=WorkerId("w1")))
    changes = [
        NodeChange("draft", NodeStatus.RUNNING, attempt=1),
        ErrorChange(
            "builtins.TimeoutError",
            "took too long",
            "retried",
            node="draft",
            attempt=1,
            traceback="Traceback ...",
            details={"delay": 0.5},
        ),
        NodeChange("draft", NodeStatus.RUNNING, attempt=2),
    ]
    result = await store.record_transitions(run.id, run.fencing, changes)

    [report] = await store.list_errors(run_id=run.id)
    assert (report.node, report.attempt, report.outcome) == ("draft", 1, "retried")
    assert report.details == {"delay": 0.5} and report.traceback == "Traceback ..."
    event = (await store.read_transitions(run.id, after_seq=result.first_seq))[0]
    assert (event.kind, event.name, event.node, event.attempt) == (
        TransitionKind.EVENT,
        "error",
        "draft",
        1,
    )
    assert event.payload == {
        "type": "builtins.TimeoutError",
        "message": "took too long",
        "outcome": "retried",
    }

    with pytest.raises(LeaseLost):
        await store.record_transitions(run.id, run.fencing + 1, changes)
    assert len(await store.list_errors(run_id=run.id)) == 1


async def test_metrics_and_spans_are_stored(store: SQLStore, clock: FakeClock) -> None:
    run = await store.create_run(new_run())
    await store.record_metrics(
        [
            MetricPoint("node_duration_ms", 12.5, workflow="triage", node="draft", run_id=run.id),
            MetricPoint("cache_hit", 1, labels={"node": "draft"}),
        ]
    )
    durations = await store.list_metrics(run_id=run.id)
    assert [(m.name, m.value, m.node) for m in durations] == [("node_duration_ms", 12.5, "draft")]
    [hit] = await store.list_metrics(name="cache_hit")
    assert hit.labels == {"node": "draft"} and hit.recorded_at == clock.now

    root = Span("s1", "t1", "run triage", clock.now, run_id=run.id)
    child = Span(
        "s2",
        "t1",
        "node draft",
        clock.now,
        parent_span_id="s1",
        run_id=run.id,
        node="draft",
        attempt=1,
    )
    await store.record_spans([root, child])
    clock.advance(1)
    ended = Span(
        "s2",
        "t1",
        "node draft",
        child.started_at,
        parent_span_id="s1",
        run_id=run.id,
        node="draft",
        attempt=1,
        ended_at=clock.now,
        status="ok",
        attributes={"tokens": 3},
    )
    await store.record_spans([ended])

    spans = {s.span_id: s for s in await store.list_spans(trace_id="t1")}
    assert spans["s2"] == ended
    assert spans["s1"].ended_at is None
    assert len(await store.list_spans(run_id=run.id)) == 2


# ------------------------------------------------------------------------ circuit breakers


async def test_breaker_state_is_saved_with_compare_and_set(
    store: SQLStore, clock: FakeClock
) -> None:
    assert await store.get_breaker("search-api") is None
    saved = await store.save_breaker(
        "search-api",
        state="closed",
        failure_count=1,
        success_count=0,
        opened_at=None,
        expected_version=0,
    )
    assert saved is not None and saved.version == 1
    lost_race = await store.save_breaker(
        "search-api",
        state="closed",
        failure_count=1,
        success_count=0,
        opened_at=None,
        expected_version=0,
    )
    assert lost_race is None

    opened = await store.save_breaker(
        "search-api",
        state="open",
        failure_count=5,
        success_count=0,
        opened_at=clock.now,
        expected_version=1,
    )
    assert opened is not None and opened.version == 2
    assert await store.get_breaker("search-api") == opened
    stale = await store.save_breaker(
        "search-api",
        state="closed",
        failure_count=0,
        success_count=0,
        opened_at=None,
        expected_version=1,
    )
    assert stale is None


# ------------------------------------------------------------------------ cancellation


async def test_a_queued_run_is_cancelled_at_once_and_a_running_one_is_flagged(
    store: SQLStore, clock: FakeClock
) -> None:
    queued = await store.create_run(new_run())
    cancelled = await store.request_cancel(queued.id)
    assert cancelled.status is RunStatus.CANCELLED
    assert cancelled.finished_at == clock.now
    assert (await store.read_transitions(queued.id))[-1].status == "cancelled"
    assert await store.claim_run(A, lease_seconds=10) is None

    running = await store.create_run(new_run(owner=A))
    assert await store.cancel_requests(A) == frozenset()
    flagged = await store.request_cancel(running.id)
    assert flagged.status is RunStatus.RUNNING
    assert flagged.cancel_requested_at == clock.now
    assert await store.cancel_requests(A) == {running.id}
    assert await store.cancel_requests(B) == frozenset()
    clock.advance(1)
    again = await store.request_cancel(running.id)
    assert again.cancel_requested_at == flagged.cancel_requested_at  # the first request stands

    await store.record_transitions(running.id, 1, [RunChange(RunStatus.CANCELLED)])
    assert await store.cancel_requests(A) == frozenset()
    ended = await store.request_cancel(running.id)
    assert ended.status is RunStatus.CANCELLED
    with pytest.raises(RunNotFound):
        await store.request_cancel(RunId("nope"))


async def test_a_failed_run_is_reopened_with_a_new_fencing_number(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A))
    await store.record_transitions(
        run.id,
        1,
        [
            NodeChange("a", NodeStatus.SUCCEEDED, output=1),
            RunChange(RunStatus.FAILED, error={"m": 1}),
        ],
    )
    claim = await store.reopen_run(run.id, B, lease_seconds=10)
    assert claim is not None
    assert (claim.run.status, claim.fencing, claim.owner, claim.run.error) == (
        RunStatus.RUNNING,
        2,
        B,
        None,
    )
    assert (await store.read_transitions(run.id))[-1].payload == {
        "owner": B,
        "fencing": 2,
        "reopened": True,
    }
    assert await store.read_outputs(run.id) == {("a", ""): 1}
    assert await store.reopen_run(run.id, B, lease_seconds=10) is None  # running, not failed


async def test_a_waiting_run_has_no_owner_takes_no_writes_and_is_claimed_when_due(
    store: SQLStore, clock: FakeClock
) -> None:
    run = await store.create_run(new_run(owner=A))
    wake_at = clock() + timedelta(seconds=60)
    await store.record_transitions(run.id, 1, [RunChange(RunStatus.WAITING, wake_at=wake_at)])
    waiting = await store.get_run(run.id)
    assert (waiting.status, waiting.lease_owner, waiting.wake_at) == (
        RunStatus.WAITING,
        None,
        wake_at,
    )
    with pytest.raises(LeaseLost):  # the worker that had it writes nothing more
        await store.record_transitions(run.id, 1, [NodeChange("a", NodeStatus.RUNNING)])
    assert await store.claim_run(B, lease_seconds=10) is None  # not due yet
    clock.advance(61)
    claim = await store.claim_run(B, lease_seconds=10)
    assert claim is not None and claim.run.id == run.id
    assert (claim.run.status, claim.fencing, claim.run.wake_at) == (RunStatus.RUNNING, 2, None)


async def test_a_signal_is_kept_until_the_run_waits_and_wakes_a_waiting_run(
    store: SQLStore, clock: FakeClock
) -> None:
    run = await store.create_run(new_run(owner=A))
    early = await store.send_signal(run.id, "approval", {"approved": True})  # before any wait
    assert (early.name, early.payload, early.consumed_at) == ("approval", {"approved": True}, None)
    await store.record_transitions(run.id, 1, [RunChange(RunStatus.WAITING, wake_at=None)])
    assert await store.claim_run(B, lease_seconds=10) is None  # waits for a signal only
    await store.send_signal(run.id, "approval", {"approved": False}, idempotency_key="k1")
    again = await store.send_signal(run.id, "approval", {"approved": "twice"}, idempotency_key="k1")
    assert again.payload == {"approved": False}  # the first one sent with that key
    assert [s.payload for s in await store.list_signals(run.id)] == [
        {"approved": True},
        {"approved": False},
    ]
    assert (await store.get_run(run.id)).wake_at == clock()  # due at once
    claim = await store.claim_run(B, lease_seconds=10)
    assert claim is not None and claim.run.id == run.id


async def test_a_signal_to_an_ended_or_unknown_run_is_refused(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A))
    await store.record_transitions(run.id, 1, [RunChange(RunStatus.SUCCEEDED, output=1)])
    with pytest.raises(
        RunEnded, match=rf"run {run.id} has ended \(succeeded\): it takes no signal 'approval'"
    ):
        await store.send_signal(run.id, "approval", {})
    with pytest.raises(RunNotFound):
        await store.send_signal(RunId("nope"), "approval", {})
    assert await store.list_signals(run.id) == []


async def test_a_waiting_run_is_cancelled_at_once(store: SQLStore) -> None:
    run = await store.create_run(new_run(owner=A))
    await store.record_transitions(
        run.id,
        1,
        [
            NodeChange("review", NodeStatus.WAITING, attempt=1),
            RunChange(RunStatus.WAITING, wake_at=None),
        ],
    )
    cancelled = await store.request_cancel(run.id)
    assert (cancelled.status, cancelled.wake_at) == (RunStatus.CANCELLED, None)
    [review] = await store.read_node_executions(run.id)
    assert review.status is NodeStatus.CANCELLED and review.finished_at is not None
    with pytest.raises(RunEnded):
        await store.send_signal(run.id, "approval", {})


async def test_a_signal_sent_while_the_run_runs_makes_it_due_when_it_goes_waiting(
    store: SQLStore, clock: FakeClock
) -> None:
    run = await store.create_run(new_run(owner=A))
    await store.send_signal(run.id, "approval", {"approved": True})  # it is running: no wake-up
    await store.send_signal(run.id, "other", 1)
    waiting = RunChange(RunStatus.WAITING, wake_at=None, signals=("approval",))
    await store.record_transitions(run.id, 1, [waiting])
    assert (await store.get_run(run.id)).wake_at == clock()  # due at once
    other = await store.create_run(new_run(owner=A))
    await store.send_signal(other.id, "other", 1)  # not one it waits for
    await store.record_transitions(other.id, 1, [waiting])
    assert (await store.get_run(other.id)).wake_at is None
