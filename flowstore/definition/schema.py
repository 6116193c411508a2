"""The JSON Schema of the DSL, generated from the spec models, for editors and CI.

`flowstore schema` prints it. With a `# yaml-language-server: $schema=<path or URL>` line at
the top of a YAML workflow (or `"$schema"` in JSON), editors with a YAML language server
check and complete definitions as they are typed. The schema says what the spec models
accept, shorthands included; what only the compiler knows (that a node named in `inputs`
exists, that the graph has no cycle) stays with `flowstore validate`.
"""

from __future__ import annotations

from typing import Any

from flowstore.definition.spec import WorkflowSpec

__all__ = ["SCHEMA_ID", "workflow_schema"]

SCHEMA_ID = "https://flowstore.dev/schema/workflow.schema.json"


def workflow_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a workflow definition."""
    schema = WorkflowSpec.model_json_schema(mode="validation")
    # Editors put `$schema` in JSON files themselves: allow it beside the workflow's keys.
    schema["properties"] = {"$schema": {"type": "string"}, **schema["properties"]}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        **schema,
        "title": "flowstore workflow",
    }
