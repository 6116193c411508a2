"""Secret fields kept out of error reports.

A workflow's `config.secret_fields` (and an engine's `secret_fields`) name fields whose values
must never be stored with a failure: an API key in a run's inputs, a token a node returns.
Before a run's changes are committed, `Redactor` rewrites every error it reports (the error
report rows, the `error` events of the log, a failed node's or run's stored error) so that:

- in JSON values (an error's details), the value under a secret field, at any depth, becomes
  `"[redacted]"`;
- in text (an exception's message, a traceback), `field=value`, `field: value` and
  `"field": "value"` lose their value, and so does every value the run has seen under a secret
  field: in the run's inputs, a node's inputs or a node's output.

A node's inputs and outputs themselves are stored unchanged: a run resumes from them.
Field names match whole and without regard to case (`API_KEY` is `api_key`).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

from flowstore.store.records import UNSET, Change, ErrorChange, NodeChange, RunChange

__all__ = ["REDACTED", "Redactor"]

REDACTED = "[redacted]"

_SHORTEST = 4
"""Seen values shorter than this are not replaced in text: they would match everywhere."""


class Redactor:
    """Rewrites a run's errors so that no value of a secret field is stored with them."""

    def __init__(self, fields: Iterable[str]) -> None:
        self._fields = frozenset(field.lower() for field in fields)
        names = "|".join(re.escape(field) for field in sorted(self._fields, key=len, reverse=True))
        # `api_key=abc`, `api_key: abc`, `"api_key": "abc"`, `'api_key': 'abc'`, `?api_key=abc&`
        self._assignment = re.compile(
            rf"(?i)(?<![\w-])({names})([\"']?\s*[:=]\s*)(?!\[redacted\])"
            rf"(\"[^\"]*\"|'[^']*'|[^\s\"',;&)}}\]]+)"
        )
        self._seen: set[str] = set()
        self._seen_pattern: re.Pattern[str] | None = None

    @classmethod
    def of(cls, *field_lists: Iterable[str]) -> Redactor | None:
        """A redactor for the union of `field_lists`; None when they name no field."""
        fields = {field for fields in field_lists for field in fields}
        return cls(fields) if fields else None

    def learn(self, value: Any) -> None:
        """Remember the values under secret fields in `value` (a JSON value)."""
        before = len(self._seen)
        self._collect(value)
        if len(self._seen) != before:
            longest_first = sorted(self._seen, key=len, reverse=True)
            self._seen_pattern = re.compile("|".join(map(re.escape, longest_first)))

    def value(self, value: Any) -> Any:
        """`value` (a JSON value) with secret fields' values and seen secrets replaced."""
        if isinstance(value, dict):
            return {
                key: REDACTED if self._is_secret(key) else self.value(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        """`text` with assignments to secret fields and seen secret values replaced."""
        text = self._assignment.sub(_keep_name, text)
        if self._seen_pattern is not None:
            text = self._seen_pattern.sub(REDACTED, text)
        return text

    def changes(self, changes: Sequence[Change]) -> list[Change]:
        """`changes` as they may be stored: errors rewritten, secrets in them learned first."""
        for change in changes:
            if isinstance(change, NodeChange):
                if change.input is not UNSET:
                    self.learn(change.input)
                if change.output is not UNSET:
                    self.learn(change.output)
        return [self._change(change) for change in changes]

    def _change(self, change: Change) -> Change:
        if isinstance(change, ErrorChange):
            return dataclasses.replace(
                change,
                message=self.text(change.message),
                traceback=None if change.traceback is None else self.text(change.traceback),
                details=self.value(change.details),
            )
        if isinstance(change, NodeChange | RunChange) and change.error not in (UNSET, None):
            return dataclasses.replace(change, error=self.value(change.error))
        return change

    def _is_secret(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower() in self._fields

    def _collect(self, value: Any) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if self._is_secret(key):
                    self._remember(item)
                else:
                    self._collect(item)
        elif isinstance(value, list | tuple):
            for item in value:
                self._collect(item)

    def _remember(self, value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                self._remember(item)
        elif isinstance(value, list | tuple):
            for item in value:
                self._remember(item)
        elif value is not None and not isinstance(value, bool):
            text = str(value)
            if len(text) >= _SHORTEST:
                self._seen.add(text)


def _keep_name(match: re.Match[str]) -> str:
    value = match.group(3)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group(1)}{match.group(2)}{quote}{REDACTED}{quote}"
