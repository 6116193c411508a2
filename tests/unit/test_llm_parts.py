"""The `llm` node's pure parts: templates, prices, Retry-After, and the retry delay it asks."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from flowstore import LlmCallFailed, LlmConfig, ModelPrice
from flowstore.llm.client import _retry_after
from flowstore.llm.node import Template
from flowstore.runtime.policies.retry import _asked_delay


def test_a_template_fills_plain_names_and_nothing_else() -> None:
    template = Template("{a} and {b} and {a} {{literal}}")
    assert template.fields == ["a", "b"]
    assert template.render({"a": "x", "b": {"k": [1]}}) == 'x and {"k": [1]} and x {literal}'
    for bad in ("{a.__class__}", "{a[0]}", "{a!r}", "{a:>10}", "{}"):
        with pytest.raises(ValueError, match="not a plain name"):
            Template(bad)


def test_a_call_costs_by_the_price_of_its_model() -> None:
    config = LlmConfig(
        model="m",
        prompt="p",
        prices={"m": ModelPrice(prompt=3.0, completion=15.0)},
    )
    assert config.price_of(1_000, 500) == pytest.approx((3_000 + 7_500) / 1e6)
    assert config.price_of(None, None) is None
    assert LlmConfig(model="other", prompt="p").price_of(10, 10) is None


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    assert _retry_after(httpx.Headers({"Retry-After": "7"})) == 7.0
    when = datetime.now(UTC) + timedelta(seconds=30)
    dated = httpx.Headers({"Retry-After": email.utils.format_datetime(when, usegmt=True)})
    assert 28 <= (_retry_after(dated) or 0) <= 30
    assert _retry_after(httpx.Headers({"Retry-After": "soon"})) is None
    assert _retry_after(httpx.Headers()) is None


def test_the_delay_a_dependency_asks_for_is_bounded() -> None:
    assert _asked_delay(LlmCallFailed(retry_after=2.5)) == 2.5
    assert _asked_delay(LlmCallFailed(retry_after=10**9)) == 3600.0
    assert _asked_delay(LlmCallFailed()) == 0.0
    assert _asked_delay(ValueError()) == 0.0
    assert _asked_delay(LlmCallFailed(retry_after=float("nan"))) == 0.0
