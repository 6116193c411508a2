"""The package's surface: exports, a light import, one exception tree, clear URL errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

import flowstore
import flowstore.errors
import flowstore.store
from flowstore.errors import FlowstoreError, StoreError
from flowstore.store.engine import normalize_url


@pytest.mark.parametrize("module", [flowstore, flowstore.errors, flowstore.store])
def test_every_exported_name_exists(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert len(names) == len(set(names))
    for name in names:
        assert getattr(module, name) is not None, name


def test_import_flowstore_does_not_load_sqlalchemy_or_alembic() -> None:
    code = (
        "import sys, flowstore, flowstore.store;"
        "print(sorted(m for m in ('sqlalchemy', 'alembic', 'aiosqlite') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"


def test_every_error_is_a_flowstore_error_with_its_docstring_as_default_message() -> None:
    for name in flowstore.errors.__all__:
        cls = getattr(flowstore.errors, name)
        if not issubclass(cls, Exception) or issubclass(cls, Warning):
            continue
        assert issubclass(cls, FlowstoreError)
        assert cls().message == cls.__doc__.strip()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("sqlite:///runs.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///runs.db", "sqlite+aiosqlite"),
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg"),
    ],
)
def test_urls_get_their_async_driver(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "in-memory SQLite database is private to one connection"),
        ("sqlite:///:memory:", "give a file path"),
        ("mysql://u@h/db", "unsupported database 'mysql://u@h/db'"),
    ],
)
def test_unusable_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        normalize_url(url)
