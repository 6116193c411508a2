"""Which errors a retry or fallback policy covers: the ones it names, or any but mistakes."""

from __future__ import annotations

from collections.abc import Collection

from flowstore.errors import ConfigurationError, InvalidValue

__all__ = ["covers"]

# A mistake in the workflow or its setup fails the node loudly: retrying it fails the same
# way, and a fallback would turn a bug into a quiet success.
_MISTAKES = (ConfigurationError, InvalidValue)


def covers(names: Collection[str], error: BaseException) -> bool:
    """Whether a policy listing the exception `names` covers `error`: one whose class, or a
    base class, is named there (`TimeoutError`, `httpx.ConnectError`); or, when `names` is
    empty, any `Exception` but `ConfigurationError` and `InvalidValue`."""
    if not isinstance(error, Exception):
        return False
    if not names:
        return not isinstance(error, _MISTAKES)
    return any(
        cls.__qualname__ in names or f"{cls.__module__}.{cls.__qualname__}" in names
        for cls in type(error).__mro__
    )
