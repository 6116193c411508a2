"""The redactor: secret fields' values out of JSON and text, whatever the spelling."""

from __future__ import annotations

import pytest

from flowstore.runtime.redaction import REDACTED, Redactor
from flowstore.store.records import (
    ErrorChange,
    EventChange,
    NodeChange,
    NodeStatus,
    RunChange,
    RunStatus,
)


def test_no_fields_means_no_redactor() -> None:
    assert Redactor.of((), []) is None
    assert Redactor.of(["token"], ()) is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api_key=abc123", f"api_key={REDACTED}"),
        ("API_KEY: abc123 then", f"API_KEY: {REDACTED} then"),
        ('{"api_key": "abc123", "n": 1}', f'{{"api_key": "{REDACTED}", "n": 1}}'),
        ("{'api_key': 'abc 123'}", f"{{'api_key': '{REDACTED}'}}"),
        ("GET /v1?q=x&api_key=abc123&page=2", f"GET /v1?q=x&api_key={REDACTED}&page=2"),
        ("my_api_key=abc123 api_keys=abc", "my_api_key=abc123 api_keys=abc"),  # other fields
        ("the api_key was wrong", "the api_key was wrong"),  # no value given
    ],
)
def test_assignments_to_secret_fields_lose_their_value(text: str, expected: str) -> None:
    redactor = Redactor(["api_key"])
    assert redactor.text(text) == expected
    assert redactor.text(expected) == expected  # redacting twice changes nothing


def test_values_seen_under_secret_fields_are_replaced_anywhere_in_text() -> None:
    redactor = Redactor(["password", "token"])
    redactor.learn({"user": "ana", "auth": [{"Password": "hunter22"}], "token": {"id": 12345}})
    redactor.learn({"token": "ab", "password": None, "other": "ana-secret"})  # short, null
    assert redactor.text("login ana/hunter22 failed for 12345 (ab)") == (
        f"login ana/{REDACTED} failed for {REDACTED} (ab)"
    )


def test_json_values_lose_secret_fields_at_any_depth() -> None:
    redactor = Redactor(["token"])
    redactor.learn({"token": "t-0001"})
    value = {"token": {"a": 1}, "calls": [{"Token": "x", "url": "/x?token=t-0001"}], "n": 3}
    assert redactor.value(value) == {
        "token": REDACTED,
        "calls": [{"Token": REDACTED, "url": f"/x?token={REDACTED}"}],
        "n": 3,
    }


def test_changes_learn_inputs_and_outputs_before_rewriting_errors() -> None:
    redactor = Redactor(["session"])
    secret = "s-93jf02"
    error = {"type": "RuntimeError", "message": f"expired {secret}", "traceback": secret}
    changes = [
        NodeChange("login", NodeStatus.SUCCEEDED, output={"session": secret}),
        NodeChange("fetch", NodeStatus.FAILED, error=error),
        ErrorChange("RuntimeError", f"expired {secret}", "failed_run", traceback=f"... {secret}"),
        EventChange("custom", {"session": secret}),  # a node's own event is not an error
        RunChange(RunStatus.FAILED, error=error),
    ]
    login, fetch, report, event, run = redactor.changes(changes)
    assert login == changes[0]
    assert isinstance(fetch, NodeChange) and fetch.error["message"] == f"expired {REDACTED}"
    assert isinstance(report, ErrorChange) and report.traceback == f"... {REDACTED}"
    assert report.message == f"expired {REDACTED}"
    assert event == changes[3]
    assert isinstance(run, RunChange) and run.error["traceback"] == REDACTED
