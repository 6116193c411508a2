"""The DSL's JSON Schema: generated from the spec models, and every example validates."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from flowstore.definition.schema import workflow_schema

ROOT = Path(__file__).resolve().parents[3]
SHAPES = Path(__file__).resolve().parent
COMMITTED = ROOT / "schema" / "workflow.schema.json"


def _read(path: Path) -> Any:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def _examples() -> list[Path]:
    return [
        *sorted((ROOT / "examples").glob("*.yaml")),
        *sorted((SHAPES / "yaml").glob("*.yaml")),
        *sorted((SHAPES / "json").glob("*.json")),
    ]


def _documented() -> list[tuple[str, str]]:
    """The YAML workflows of the README and the docs."""
    blocks = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for n, block in enumerate(re.findall(r"```yaml\n(.*?)```", page.read_text(), re.S)):
            if "nodes:" in block:
                blocks.append((f"{page.relative_to(ROOT)} yaml block {n + 1}", block))
    return blocks


def test_the_committed_schema_is_the_generated_one() -> None:
    # Regenerate with: flowstore schema --output schema/workflow.schema.json
    assert json.loads(COMMITTED.read_text()) == workflow_schema()


@pytest.mark.parametrize("path", _examples(), ids=lambda path: path.name)
def test_every_example_validates_against_the_schema(path: Path) -> None:
    jsonschema.validate(_read(path), workflow_schema())


@pytest.mark.parametrize(("where", "block"), _documented(), ids=lambda value: str(value)[:40])
def test_every_documented_workflow_validates_against_the_schema(where: str, block: str) -> None:
    jsonschema.validate(yaml.safe_load(block), workflow_schema())


def test_the_examples_point_editors_at_the_schema() -> None:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../schema/workflow.schema.json", path


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad_join.yaml", "'some' is not one of ['all', 'any', 'all_done']"),
        ("bad_node_name.yaml", "'1st' does not match"),
        ("empty_nodes.yaml", "[] should be non-empty"),
    ],
)
def test_the_schema_refuses_what_the_spec_refuses(name: str, message: str) -> None:
    with pytest.raises(jsonschema.ValidationError, match=re.escape(message)):
        jsonschema.validate(_read(SHAPES / "invalid" / name), workflow_schema())
