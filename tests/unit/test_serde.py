"""Stored values are JSON through Pydantic, with clear errors and size limits."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest
from pydantic import BaseModel

from flowstore.errors import LargeValueWarning, UnserializableValue, ValueTooLarge
from flowstore.store import serde


class Ticket(BaseModel):
    title: str
    opened: dt.date


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    pass


def test_models_dataclasses_and_plain_data_encode_to_json() -> None:
    value = {"ticket": Ticket(title="disk", opened=dt.date(2026, 1, 2)), "at": [Point(1, 2)]}
    encoded = serde.encode(value, what="output of node 'x'")
    assert json.loads(encoded.text) == {
        "ticket": {"title": "disk", "opened": "2026-01-02"},
        "at": [{"x": 1, "y": 2}],
    }
    assert serde.decode(encoded.text) == json.loads(encoded.text)


def test_the_driver_serializer_passes_encoded_text_through() -> None:
    encoded = serde.encode(None, what="x")
    assert serde.serialize_for_driver(encoded) == "null"
    assert serde.serialize_for_driver({"a": [1]}) == '{"a":[1]}'


def test_an_unserializable_value_names_its_type_and_path() -> None:
    with pytest.raises(UnserializableValue) as caught:
        serde.encode({"items": [1, {"deep": Opaque()}]}, what="output of node 'draft'")
    message = str(caught.value)
    assert message.startswith("output of node 'draft' cannot be stored as JSON")
    assert "test_serde.Opaque at ['items'][1]['deep']" in message


def test_an_unserializable_top_level_value_names_its_type() -> None:
    with pytest.raises(UnserializableValue, match=r"test_serde.Opaque has no JSON form"):
        serde.encode(Opaque(), what="inputs of run r")


def test_size_limits_warn_then_refuse() -> None:
    limits = serde.ValueLimits(warn_bytes=10, max_bytes=20)
    assert serde.encode("x" * 5, what="v", limits=limits).text == '"xxxxx"'
    with pytest.warns(LargeValueWarning, match="v is 14 bytes as JSON"):
        serde.encode("x" * 12, what="v", limits=limits)
    with pytest.raises(ValueTooLarge, match="v is 32 bytes as JSON, over the limit of 20 bytes"):
        serde.encode("x" * 30, what="v", limits=limits)


def test_default_limits_are_256_kb_and_2_mb() -> None:
    assert serde.ValueLimits() == serde.ValueLimits(warn_bytes=262_144, max_bytes=2_097_152)
