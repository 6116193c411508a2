"""JSON encoding of stored values, through Pydantic, with size limits. Never pickle.

A value is encoded once, by `encode`, into an `Encoded` holding its JSON text; the engine's
JSON serializer passes that text through untouched, so the size check and the stored bytes agree
and nothing is encoded twice. Values come back as plain JSON data (dicts, lists, strings,
numbers); the runtime validates them into its own types.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import pydantic_core
from pydantic import ConfigDict, TypeAdapter

from flowstore.errors import LargeValueWarning, UnserializableValue, ValueTooLarge

__all__ = ["Encoded", "ValueLimits", "decode", "encode", "plain", "serialize_for_driver"]

# Non-finite floats become the strings "NaN", "Infinity" and "-Infinity" (not null): a value
# annotated `float` reads them back as the same floats.
_ANY: Final = TypeAdapter(Any, config=ConfigDict(ser_json_inf_nan="strings"))
_KB: Final = 1024


@dataclass(frozen=True, slots=True)
class ValueLimits:
    """Size limits for one stored value's JSON form.

    Attributes:
        warn_bytes: Past this size a `LargeValueWarning` is issued and the value is stored.
        max_bytes: Past this size the value is refused with `ValueTooLarge`.
    """

    warn_bytes: int = 256 * _KB
    max_bytes: int = 2048 * _KB


DEFAULT_LIMITS: Final = ValueLimits()


class Encoded(str):
    """A value's JSON text, ready to be written as is.

    A `str`, so a batch of rows holding encoded values can itself be encoded in one call.
    """

    __slots__ = ()

    @property
    def text(self) -> str:
        """The JSON text."""
        return str(self)

    def __repr__(self) -> str:
        return f"Encoded({str(self)[:60]!r})"


def encode(value: Any, *, what: object, limits: ValueLimits = DEFAULT_LIMITS) -> Encoded:
    """Encode `value` to JSON for storage.

    Args:
        value: Plain data, a Pydantic model, a dataclass, or anything Pydantic serializes.
        what: Names the value in errors, such as "output of node 'draft' in run 1b2c…" (any
            object: it is formatted only when an error or warning is raised).
        limits: The size limits to apply.

    Raises:
        UnserializableValue: A part of the value has no JSON form; the message names its
            type and where it is inside the value.
        ValueTooLarge: The JSON is larger than `limits.max_bytes`.
    """
    if isinstance(value, Encoded):  # checked and encoded already (`Store.encode`)
        return value
    if type(value) is str and 6 * len(value) + 2 <= limits.warn_bytes:
        return Encoded(pydantic_core.to_json(value).decode())  # a token: no limit to check
    try:
        raw = _ANY.dump_json(value)
    except pydantic_core.PydanticSerializationError as exc:
        if "depth exceeded" in str(exc):
            raise UnserializableValue(
                f"{what} cannot be stored as JSON: it is nested too deeply"
            ) from None
        path, bad = _find_unserializable(value, "")
        where = f" at {path}" if path else ""
        raise UnserializableValue(
            f"{what} cannot be stored as JSON: {type(bad).__module__}.{type(bad).__qualname__}"
            f"{where} has no JSON form (use plain data, a Pydantic model or a dataclass)"
        ) from exc
    size = len(raw)
    if size > limits.max_bytes:
        raise ValueTooLarge(
            f"{what} is {size:,} bytes as JSON, over the limit of {limits.max_bytes:,} bytes "
            "(store large payloads elsewhere and keep a reference, or raise the limit)"
        )
    if size > limits.warn_bytes:
        warnings.warn(
            f"{what} is {size:,} bytes as JSON (warning threshold {limits.warn_bytes:,})",
            LargeValueWarning,
            stacklevel=3,
        )
    return Encoded(raw.decode())


def _find_unserializable(value: Any, path: str) -> tuple[str, Any]:
    """Find the innermost part of `value` that Pydantic cannot serialize, and its path."""
    children: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        children = [(f"{path}[{key!r}]", item) for key, item in value.items()]
    elif isinstance(value, list | tuple | set | frozenset):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    for child_path, child in children:
        try:
            _ANY.dump_json(child)
        except pydantic_core.PydanticSerializationError:
            return _find_unserializable(child, child_path)
    return path, value


def serialize_for_driver(value: Any) -> str:
    """The engine's JSON serializer: pass encoded text through, encode anything else."""
    if isinstance(value, Encoded):
        return value.text
    return json.dumps(value, separators=(",", ":"))


def decode(text: str | bytes) -> Any:
    """The engine's JSON deserializer."""
    return pydantic_core.from_json(text)


def plain(value: Any) -> Any:
    """A value as it reads back from the store: decoded if `encode` made it, else as it is."""
    return decode(value) if isinstance(value, Encoded) else value
