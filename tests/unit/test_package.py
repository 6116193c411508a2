"""The package's surface: exports, a light import, one exception tree, clear URL errors."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

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


def test_dir_lists_every_export_and_each_loads_from_flowstore_itself() -> None:
    assert set(flowstore.__all__) <= set(dir(flowstore))
    for name in ("Workflow", "Engine", "Client", "NodeContext", "Run", "RunStatus", "TokenEvent"):
        assert name in flowstore.__all__
        assert getattr(flowstore, name).__name__ == name


def _python_sources() -> dict[str, str]:
    """The README's Python blocks and the examples, by where they are."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    sources = {f"README.md python block {n}": block for n, block in enumerate(blocks, 1)}
    for page in sorted((root / "docs").rglob("*.md")):
        blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
        for n, block in enumerate(blocks, 1):
            sources[f"{page.relative_to(root)} python block {n}"] = block
    for path in sorted((root / "examples").glob("*.py")):
        sources[str(path.relative_to(root))] = path.read_text()
    return sources


_TEST_HELPERS = {"flowstore.llm.testing"}
"""Modules for tests and examples (a fake model endpoint), never for an application."""


def test_the_readme_the_docs_and_the_examples_import_from_flowstore_only() -> None:
    deep = []
    for where, source in _python_sources().items():
        for statement in ast.walk(ast.parse(source)):
            modules = []
            if isinstance(statement, ast.ImportFrom) and statement.module:
                modules = [statement.module]
            elif isinstance(statement, ast.Import):
                modules = [alias.name for alias in statement.names]
            deep += [
                f"{where}: {m}"
                for m in modules
                if m.startswith("flowstore.") and m not in _TEST_HELPERS
            ]
    assert deep == []
