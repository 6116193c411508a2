"""`Client`: submitting by workflow name without its code, idempotent run ids, and reads
that register no worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from flowstore import (
    Client,
    Engine,
    ExecutionError,
    IntegrityConflict,
    InvalidValue,
    RunStatus,
    TokenEvent,
    Workflow,
)
from flowstore.store import TransitionKind

triage = Workflow("triage", version="1")


@triage.node
async def classify(ticket: str, priority: int) -> str:
    return ("urgent" if "down" in ticket else "normal") + f"/{priority}"


chat = Workflow("chat", output="reply")


@chat.node
async def reply(text: str):  # type: ignore[no-untyped-def]
    for word in text.split():
        yield word + " "


async def test_a_client_submits_by_name_and_a_worker_runs_it(migrated_url: str) -> None:
    async with (
        Engine(migrated_url, workflows=[triage], poll_seconds=0.05),
        Client(migrated_url, poll_seconds=0.05) as client,
    ):
        run_id = await client.submit("triage", {"ticket": "site down", "priority": "2"})
        run = await asyncio.wait_for(client.wait(run_id), 10)
        assert (run.status, run.output, run.inputs) == (
            RunStatus.SUCCEEDED,
            "urgent/2",
            {"ticket": "site down", "priority": 2},  # checked by its declared type
        )
        [listed] = await client.list_runs(workflow="triage")
        assert listed.id == run_id


async def test_a_client_streams_the_tokens_of_a_run_a_worker_executes(migrated_url: str) -> None:
    async with (
        Engine(migrated_url, workflows=[chat], poll_seconds=0.05),
        Client(migrated_url, poll_seconds=0.05) as client,
    ):
        tokens = [
            event.text
            async for event in client.stream("chat", {"text": "one two three"})
            if isinstance(event, TokenEvent)
        ]
        assert "".join(tokens) == "one two three "


async def test_submitting_twice_with_one_run_id_gives_one_run(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[triage], workers=0) as engine:
        first = await engine.submit(triage, {"ticket": "a", "priority": 1}, run_id="ticket-1")
        again = await engine.submit(triage, {"ticket": "a", "priority": 1}, run_id="ticket-1")
        async with Client(migrated_url) as client:
            by_name = await client.submit("triage", {"ticket": "a", "priority": 1}, run_id=first)
            assert first == again == by_name == "ticket-1"
            assert [run.id for run in await client.list_runs()] == ["ticket-1"]
            with pytest.raises(
                IntegrityConflict,
                match="run id 'ticket-1' is taken by a run of workflow 'triage', not 'chat'",
            ):
                await engine.submit(chat, {"text": "hi"}, run_id="ticket-1")


async def test_concurrent_submissions_of_one_run_id_give_one_run(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[triage], workers=0):
        pass  # stores the definition
    async with Client(migrated_url) as client:
        ids = await asyncio.gather(
            *(
                client.submit("triage", {"ticket": "a", "priority": 1}, run_id="t-9")
                for _ in range(8)
            )
        )
        assert set(ids) == {"t-9"}
        assert len(await client.list_runs()) == 1


async def test_a_client_registers_no_worker_and_executes_nothing(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[triage], workers=0):
        pass
    async with Client(migrated_url) as client:
        run_id = await client.submit("triage", {"ticket": "a", "priority": 1})
        await asyncio.sleep(0.2)
        assert await client.store.list_workers() == []
        assert (await client.get_run(run_id)).status is RunStatus.QUEUED
        cancelled = await client.cancel(run_id)
        assert cancelled.status is RunStatus.CANCELLED


async def test_a_workflow_no_worker_stored_is_refused_with_what_to_do(migrated_url: str) -> None:
    async with Client(migrated_url) as client:
        with pytest.raises(ExecutionError, match="no definition of workflow 'billing' is stored"):
            await client.submit("billing", {})


async def test_bad_inputs_are_refused_before_anything_is_stored(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[triage], workers=0):
        pass
    async with Client(migrated_url) as client:
        with pytest.raises(
            InvalidValue, match="invalid inputs: priority: Input should be a valid integer"
        ):
            await client.submit("triage", {"ticket": "a", "priority": "high"})
        with pytest.raises(InvalidValue, match="tiket: unknown input"):
            await client.submit("triage", {"tiket": "a", "priority": 1})
        assert await client.list_runs() == []


async def test_the_version_a_live_worker_has_is_the_one_submitted(migrated_url: str) -> None:
    newer = Workflow("triage", version="2")

    @newer.node
    async def classify(ticket: str, priority: int) -> str:
        return "v2"

    async with Engine(migrated_url, workflows=[newer], workers=0):
        pass  # version 2 stored, but no worker runs it
    async with (
        Engine(migrated_url, workflows=[triage], poll_seconds=0.05),
        Client(migrated_url, poll_seconds=0.05) as client,
    ):
        run = await client.wait(await client.submit("triage", {"ticket": "a", "priority": 1}))
        assert (run.version, run.output) == ("1", "normal/1")
        explicit = await client.submit("triage", {"ticket": "a", "priority": 1}, version="2")
        assert (await client.get_run(explicit)).version == "2"


async def test_the_waiters_of_one_process_share_one_poll(migrated_url: str) -> None:
    async with Engine(migrated_url, workflows=[triage], workers=0):
        pass
    async with Client(migrated_url, poll_seconds=0.05) as client:
        run_ids = [
            await client.submit("triage", {"ticket": str(n), "priority": n}) for n in range(300)
        ]
        looks: list[int] = []
        ended_runs = client.store.ended_runs

        async def counted(ids: list[str]) -> list[str]:
            looks.append(len(ids))
            return await ended_runs(ids)  # type: ignore[no-any-return]

        client.store.ended_runs = counted
        waiting = asyncio.gather(*(client.wait(run_id) for run_id in run_ids))
        for _ in range(600):  # every waiter has read its run once and waits now
            if len(client._waiting._futures) == len(run_ids):
                break
            await asyncio.sleep(0.01)
        looks.clear()
        await asyncio.sleep(0.5)
        assert not waiting.done()
        # One query per look for every waiter, not one per waiter: 300 waiters over half a
        # second at most 20 looks a second would be thousands of queries one by one.
        assert 1 <= len(looks) <= 30 and max(looks) == 300
        async with Engine(migrated_url, workflows=[triage], workers=4, poll_seconds=0.05):
            runs = await asyncio.wait_for(waiting, 60)
        assert {run.status for run in runs} == {RunStatus.SUCCEEDED}


mending = Workflow("mending", output="finish")
calls: dict[str, int] = {"prepare": 0, "finish": 0}
broken = {"finish": True}


@mending.node
async def prepare(text: str) -> str:
    calls["prepare"] += 1
    return text.upper()


@mending.node
async def finish(prepare: str) -> str:
    calls["finish"] += 1
    if broken["finish"]:
        raise RuntimeError("the service is down")
    return f"{prepare}!"


async def test_a_client_hands_a_failed_run_back_to_the_workers(migrated_url: str) -> None:
    calls.update(prepare=0, finish=0)
    broken["finish"] = True
    async with Engine(migrated_url, workflows=[mending], poll_seconds=0.05) as engine:
        failed = await engine.run(mending, {"text": "ok"})
        assert failed.status is RunStatus.FAILED
        broken["finish"] = False  # the service is back
        async with Client(migrated_url, poll_seconds=0.05) as client:
            queued = await client.resume(failed.id)
            assert (queued.status, queued.error, queued.finished_at) == (
                RunStatus.QUEUED,
                None,
                None,
            )
            run = await asyncio.wait_for(client.wait(failed.id), 10)
            # The run has not failed any more: nothing to hand back.
            with pytest.raises(ExecutionError, match="is succeeded: only a failed run"):
                await client.resume(failed.id)
            log = await client.store.read_transitions(failed.id)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "OK!")
    # What succeeded was kept; the node that failed ran again, once.
    assert calls == {"prepare": 1, "finish": 2}
    statuses = [t.status for t in log if t.kind is TransitionKind.RUN]
    assert statuses == ["running", "failed", "queued", "running", "succeeded"]


async def test_two_clients_handing_one_failed_run_back_queue_it_once(migrated_url: str) -> None:
    broken["finish"] = True
    async with Engine(migrated_url, workflows=[mending], workers=0) as engine:
        failed = await engine.run(mending, {"text": "ok"})
    async with Client(migrated_url) as first, Client(migrated_url) as second:
        results = await asyncio.gather(
            first.resume(failed.id), second.resume(failed.id), return_exceptions=True
        )
        log = await first.store.read_transitions(failed.id)
    assert sorted(type(result).__name__ for result in results) == ["ExecutionError", "Run"]
    assert [t.status for t in log if t.kind is TransitionKind.RUN][-2:] == ["failed", "queued"]
