"""Secret fields never reach stored errors: reports, the log, a failed node's or run's error."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from flowstore import ExecutionConfig, Retry, Workflow
from flowstore.hooks import HookEvent
from flowstore.runtime.engine import Engine
from flowstore.runtime.redaction import REDACTED
from flowstore.store import RunStatus

API_KEY = "sk-live-4f9a2c"
SESSION = "sess-77aa01b2"


def charging_flow() -> Workflow:
    flow = Workflow("charge", config=ExecutionConfig(secret_fields=["api_key"]), output="charge")

    @flow.node
    async def login(api_key: str, user: str) -> dict[str, str]:
        return {"session_token": SESSION, "user": user}

    @flow.node(retry=Retry(attempts=2, backoff=0, jitter=False))
    async def charge(login: dict[str, str], amount: int) -> str:
        raise RuntimeError(
            f"gateway refused {login['user']}: session {login['session_token']}, "
            f"api_key={API_KEY}, amount {amount}"
        )

    return flow


def everything_stored(reports: list[Any], log: list[Any], executions: list[Any], run: Any) -> str:
    return json.dumps(
        {
            "reports": [[r.message, r.traceback, r.details] for r in reports],
            "log": [t.payload for t in log],
            "errors": [e.error for e in executions],
            "run": run.error,
        },
        default=str,
    )


async def test_secret_values_are_replaced_in_every_stored_error(
    migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    flow = charging_flow()
    caplog.set_level(logging.DEBUG, logger="flowstore.run.charge")
    async with Engine(
        migrated_url, workers=0, secret_fields=["SESSION_TOKEN"], debug=True
    ) as engine:
        run = await engine.run(flow, {"api_key": API_KEY, "user": "ana", "amount": 12})
        assert run.status is RunStatus.FAILED
        reports = await engine.store.list_errors(run_id=run.id)
        log = await engine.store.read_transitions(run.id)
        executions = await engine.store.read_node_executions(run.id)

    assert [r.outcome for r in reports] == ["retried", "failed_run"]
    stored = everything_stored(reports, log, executions, run)
    assert API_KEY not in stored and SESSION not in stored
    for report in reports:
        assert report.message == (
            f"gateway refused ana: session {REDACTED}, api_key={REDACTED}, amount 12"
        )
        assert report.traceback is not None and f"session {REDACTED}" in report.traceback
    assert run.error is not None and run.error["message"] == reports[-1].message
    assert API_KEY not in caplog.text and SESSION not in caplog.text
    assert "node charge starts" in caplog.text  # debug lines were written, with the secrets out
    # What the run resumes from is stored as it was.
    login = next(e for e in executions if e.node == "login")
    assert login.input["api_key"] == API_KEY and login.output["session_token"] == SESSION


async def test_a_failing_hook_is_reported_and_logged_without_the_secrets(
    migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    flow = Workflow("hooked", config=ExecutionConfig(secret_fields=["api_key"]))

    @flow.node
    async def call(api_key: str) -> int:
        return 1

    def leaky(event: HookEvent) -> None:
        raise ValueError(f"cannot page with api_key: {API_KEY}")

    flow.on("run_end", leaky)
    async with Engine(migrated_url, workers=0) as engine:
        with caplog.at_level(logging.ERROR, logger="flowstore.hooks"):
            run = await engine.run(flow, {"api_key": API_KEY})
        [report] = await engine.store.list_errors(run_id=run.id)
    assert run.status is RunStatus.SUCCEEDED
    [logged] = [r for r in caplog.records if r.name == "flowstore.hooks"]
    assert "hook test_a_failing_hook" in logged.getMessage()
    assert REDACTED in caplog.text and API_KEY not in caplog.text
    assert report.outcome == "hook_failed"
    assert report.message == f"cannot page with api_key: {REDACTED}"
    assert API_KEY not in (report.traceback or "")


async def test_without_secret_fields_errors_are_stored_whole(migrated_url: str) -> None:
    flow = charging_flow()
    flow.config = ExecutionConfig()
    async with Engine(migrated_url, workers=0) as engine:
        run = await engine.run(flow, {"api_key": API_KEY, "user": "ana", "amount": 12})
        reports = await engine.store.list_errors(run_id=run.id)
    assert all(API_KEY in r.message and SESSION in r.message for r in reports)


async def test_every_line_on_a_flowstore_logger_loses_the_secrets_of_runs_executing(
    migrated_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    flow = Workflow("logged", config=ExecutionConfig(secret_fields=["api_key"]))

    @flow.node
    async def call(api_key: str) -> int:
        # Stands for any line the engine writes while the run executes (a store error that
        # quotes a value, a failure of the run's own).
        logging.getLogger("flowstore.engine").warning("calling with %s", api_key)
        try:
            raise ValueError(f"refused key {api_key}")
        except ValueError:
            logging.getLogger("flowstore.worker").exception("node failed")
        return 1

    async with Engine(migrated_url, workers=0) as engine:
        with caplog.at_level(logging.DEBUG, logger="flowstore"):
            run = await engine.run(flow, {"api_key": API_KEY})
    assert run.status is RunStatus.SUCCEEDED
    assert f"calling with {REDACTED}" in caplog.text
    assert f"ValueError: refused key {REDACTED}" in caplog.text
    assert API_KEY not in caplog.text
    logging.getLogger("flowstore.engine").warning("after the run: %s", API_KEY)
    assert API_KEY in caplog.text  # nothing is redacted once no run has the secret
