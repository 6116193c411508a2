"""Write the reference pages generated from the code: the CLI, the DSL and the SQL schema.

    python docs/generate.py           # rewrite docs/reference/{cli,dsl,sql}.md
    python docs/generate.py --check   # fail if a committed page differs (tests run this)

The API reference (`docs/reference/api.md`) is rendered by mkdocstrings from the docstrings
when the site is built.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference"


def cli_page() -> str:
    """Every command's `--help`, as argparse prints it (80 columns)."""
    import os

    os.environ["COLUMNS"] = "80"
    from flowstore.cli import build_parser

    lines = [
        "# CLI reference",
        "",
        "Generated from the argument parser (`python docs/generate.py`). Every command takes",
        "`--help`; run ids take any unique prefix; listings take `--json`.",
        "",
    ]
    for path, parser in _parsers(build_parser(), ["flowstore"]):
        lines += [f"## `{' '.join(path)}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def _parsers(
    parser: argparse.ArgumentParser, path: list[str]
) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, [*path, name])


def dsl_page() -> str:
    """Every field of the spec models: type, default, and what it means."""
    from pydantic import BaseModel

    from flowstore.definition import spec

    lines = [
        "# DSL reference",
        "",
        "A YAML or JSON workflow is a `workflow` mapping; Python definitions build the same",
        "spec. Generated from the spec models (`flowstore/definition/spec.py`); the JSON Schema",
        "(`flowstore schema`) says the same for editors.",
        "",
    ]
    models: list[tuple[str, type[BaseModel]]] = [
        ("workflow", spec.WorkflowSpec),
        ("node", spec.NodeSpec),
        ("config", spec.ExecutionConfig),
        ("retry", spec.Retry),
        ("cache", spec.Cache),
        ("fallback", spec.Fallback),
        ("breaker", spec.Breaker),
        ("loop", spec.Loop),
        ("map", spec.MapOver),
        ("memory", spec.MemoryConfig),
    ]
    for key, model in models:
        described = _attributes(model.__doc__ or "")
        summary = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        properties = model.model_json_schema(mode="validation")["properties"]
        lines += [f"## `{key}`", "", summary, "", "| field | type | default | meaning |"]
        lines += ["| --- | --- | --- | --- |"]
        for attribute, field in model.model_fields.items():
            name = field.alias or attribute
            if field.is_required():
                default = "required"
            else:
                value = field.get_default(call_default_factory=True)
                default = "see below" if isinstance(value, BaseModel) else f"`{value!r}`"
            meaning = described.get(attribute, described.get(name, field.description or ""))
            kind = _schema_type(properties[name])
            row = [f"`{name}`", f"`{kind}`", default, meaning]
            lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        lines.append("")
    return "\n".join(lines)


def _schema_type(schema: dict[str, Any]) -> str:
    """A field's type, read from its JSON Schema."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_schema_type(option) for option in schema["anyOf"])
    if "enum" in schema:
        return " or ".join(repr(value) for value in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_schema_type(schema.get('items', {}))}"
    if kind == "object":
        values = schema.get("additionalProperties")
        return f"map of {_schema_type(values)}" if isinstance(values, dict) else "mapping"
    names = {"string": "text", "integer": "integer", "number": "number", "boolean": "boolean"}
    return names.get(str(kind), "null" if kind == "null" else "any JSON")


def _attributes(doc: str) -> dict[str, str]:
    """The `Attributes:` section of a Google-style docstring, by name."""
    found: dict[str, str] = {}
    section = doc.split("Attributes:", 1)
    if len(section) < 2:
        return found
    current = None
    for line in section[1].splitlines():
        match = re.match(r"^\s{8}(\w+): (.*)$", line)
        if match:
            current = match.group(1)
            found[current] = match.group(2).strip()
        elif current and line.strip() and line.startswith(" " * 12):
            found[current] += " " + line.strip()
        elif line.strip() and not line.startswith(" " * 8):
            break
    return found


def sql_page() -> str:
    """Every table and view flowstore creates, with its columns."""
    from flowstore.store.schema import metadata
    from flowstore.store.views import VIEWS

    lines = [
        "# SQL schema reference",
        "",
        "Generated from `flowstore/store/schema.py` (the single source the Alembic migrations",
        "reproduce; a test compares them on SQLite and PostgreSQL) and `flowstore/store/views.py`.",
        "Types are shown as SQLAlchemy names: JSON columns are `JSONB` on PostgreSQL and JSON",
        "text on SQLite, read with `->>` and `json_extract` respectively.",
        "",
        "## Tables",
        "",
    ]
    for table in metadata.sorted_tables:
        lines += _table(table)
    lines += ["## Views", ""]
    for view in VIEWS:
        lines += [f"### `{view.table.name}`", "", "| column |", "| --- |"]
        lines += [f"| `{column.name}` |" for column in view.table.columns]
        lines.append("")
    return "\n".join(lines)


def _table(table: Any) -> list[str]:
    lines = [
        f"### `{table.name}`",
        "",
        "| column | type | null | key |",
        "| --- | --- | --- | --- |",
    ]
    for column in table.columns:
        keys = []
        if column.primary_key:
            keys.append("primary")
        keys += [f"→ `{fk.target_fullname}`" for fk in column.foreign_keys]
        kind = type(column.type).__name__
        null = "yes" if column.nullable else "no"
        lines.append(f"| `{column.name}` | {kind} | {null} | {', '.join(keys)} |")
    lines.append("")
    return lines


PAGES = {"cli.md": cli_page, "dsl.md": dsl_page, "sql.md": sql_page}


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for name, make in PAGES.items():
        text = make().rstrip() + "\n"
        path = REFERENCE / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}: run python docs/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
