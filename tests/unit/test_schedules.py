"""Schedules worked out without a store: which ticks start, which are skipped, the next one,
cron in a time zone across daylight saving, and the mistakes refused."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from flowstore import ConfigurationError
from flowstore.runtime.schedules import new_schedule, plan_ticks, tick_run_id
from flowstore.store.schedule_records import Schedule

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def schedule(**options: Any) -> Schedule:
    settings: dict[str, Any] = {
        "cron": None,
        "every": 10.0,
        "timezone": "UTC",
        "missed": "skip",
        "catch_up_limit": 3,
        "grace_seconds": 7.0,
        "queue": None,
        "queue_key": None,
        "priority": 0,
        "start_at": None,
        "now": NOW,
        "stored": None,
    }
    settings.update(options)
    return new_schedule("s", "w", {}, **settings)


def test_an_interval_starts_its_tick_on_time_and_then_every_period() -> None:
    ticks = schedule()
    assert ticks.next_at == NOW
    plan = plan_ticks(ticks, NOW + timedelta(seconds=0.2))
    assert (plan.start, plan.skipped) == ([NOW], 0)
    assert plan.next_at == NOW + timedelta(seconds=10)
    assert plan_ticks(ticks, NOW - timedelta(seconds=1)).start == []


def test_ticks_missed_while_nothing_ran_are_skipped_or_caught_up_with_a_bound() -> None:
    start = NOW - timedelta(seconds=105)  # ticks at -105, -95, ..., -5: 11 of them
    skipping = schedule(start_at=start)
    plan = plan_ticks(skipping, NOW)
    assert plan.start == [NOW - timedelta(seconds=5)]  # within the 7 s of grace
    assert plan.skipped == 10
    assert plan.next_at == NOW + timedelta(seconds=5)
    catching_up = schedule(start_at=start, missed="catch_up")
    plan = plan_ticks(catching_up, NOW)
    assert plan.start == [NOW - timedelta(seconds=s) for s in (35, 25, 15, 5)]
    assert plan.skipped == 7


def test_a_year_of_missed_one_second_ticks_is_counted_without_listing_them() -> None:
    idle = schedule(every=1.0, start_at=NOW - timedelta(days=365), grace_seconds=0.0)
    plan = plan_ticks(idle, NOW)
    assert plan.start == [NOW]
    assert plan.skipped == 365 * 86400


def test_cron_is_read_in_its_time_zone_across_daylight_saving() -> None:
    pytest.importorskip("croniter")
    # 02:30 every day in Paris; on 29 March 2026 the clocks jump from 02:00 to 03:00.
    before = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)
    paris = schedule(cron="30 2 * * *", every=None, timezone="Europe/Paris", start_at=before)
    assert paris.next_at == datetime(2026, 3, 28, 1, 30, tzinfo=UTC)  # 02:30 CET
    times = []
    moving = paris
    for _ in range(3):
        plan = plan_ticks(moving, moving.next_at)
        times += plan.start
        moving = _moved(moving, plan.next_at)
    assert times == [
        datetime(2026, 3, 28, 1, 30, tzinfo=UTC),  # 02:30 CET
        datetime(2026, 3, 29, 1, 0, tzinfo=UTC),  # no 02:30 that night: 03:00 CEST
        datetime(2026, 3, 30, 0, 30, tzinfo=UTC),  # 02:30 CEST
    ]


def _moved(ticks: Schedule, next_at: datetime) -> Schedule:
    return replace(ticks, next_at=next_at)


def test_declaring_the_same_schedule_again_keeps_its_next_tick() -> None:
    first = schedule(now=NOW)
    stored = _moved(first, NOW + timedelta(seconds=30))
    again = schedule(now=NOW + timedelta(hours=1), stored=stored)
    assert again.next_at == stored.next_at
    changed = schedule(now=NOW + timedelta(hours=1), stored=stored, every=20.0)
    assert changed.next_at == NOW + timedelta(hours=1)


def test_a_tick_has_one_run_id() -> None:
    ticks = _moved(schedule(), NOW)
    assert tick_run_id(ticks, NOW) == tick_run_id(ticks, NOW)
    assert tick_run_id(ticks, NOW) != tick_run_id(ticks, NOW + timedelta(seconds=10))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"every": None}, "give either cron='...' or every=..., and only one of them"),
        ({"cron": "* * * * *"}, "only one of them"),
        ({"every": 0.0}, "every must be above 0 seconds"),
        ({"every": None, "cron": "61 * * * *"}, "cron '61 \\* \\* \\* \\*' is not a cron"),
        ({"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not a time zone"),
        ({"missed": "later"}, "missed must be 'skip' or 'catch_up'"),
        ({"catch_up_limit": 0}, "catch_up_limit must be at least 1"),
    ],
)
def test_a_schedule_that_is_not_one_is_refused(options: dict[str, Any], message: str) -> None:
    if options.get("cron"):
        pytest.importorskip("croniter")
    with pytest.raises(ConfigurationError, match=message):
        schedule(**options)


def test_a_cron_schedule_without_the_cron_extra_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "croniter", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'flowstore\[cron\]'"):
        schedule(cron="0 3 * * *", every=None)
    assert schedule(every=5.0).every_seconds == 5.0  # an interval needs nothing more
