"""`--since` accepts ISO 8601 times and ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from flowstore.cli.reports import parse_since
from flowstore.errors import FlowstoreError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_ages_count_back_from_now() -> None:
    assert parse_since("30m", now=NOW) == NOW - timedelta(minutes=30)
    assert parse_since("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_since("1.5d", now=NOW) == NOW - timedelta(days=1.5)
    assert parse_since("45s", now=NOW) == NOW - timedelta(seconds=45)


def test_iso_times_are_utc_unless_they_say_otherwise() -> None:
    assert parse_since("2026-11-25T10:00") == datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
    oslo = parse_since("2026-11-25T10:00+01:00")
    assert oslo == datetime(2026, 11, 25, 10, 0, tzinfo=timezone(timedelta(hours=1)))
    assert oslo.tzinfo is UTC


def test_anything_else_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(FlowstoreError, match="give an ISO 8601 time"):
        parse_since("yesterday")
