"""What changed between two definitions of a workflow, said by node and field."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["spec_changes"]


def spec_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The differences between two stored specs (`Graph.stored_spec`), one line each: nodes
    removed or added, the fields that changed in a node, and the workflow's own fields."""
    old_nodes = {node["name"]: node for node in old.get("nodes", ())}
    new_nodes = {node["name"]: node for node in new.get("nodes", ())}
    changes = [f"node {name!r} removed" for name in old_nodes if name not in new_nodes]
    changes += [f"node {name!r} added" for name in new_nodes if name not in old_nodes]
    for name, before in old_nodes.items():
        after = new_nodes.get(name)
        if after is not None and after != before:
            fields = _changed(before, after)
            changes.append(f"node {name!r}: {', '.join(fields)} changed")
    fields = _changed(
        {key: value for key, value in old.items() if key != "nodes"},
        {key: value for key, value in new.items() if key != "nodes"},
    )
    changes += [f"workflow field {field} changed" for field in fields]
    if not changes and list(old_nodes) != list(new_nodes):
        changes.append("the nodes' order changed")
    return changes


def _changed(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    return sorted(key for key in {*before, *after} if before.get(key) != after.get(key))
