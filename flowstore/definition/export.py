"""Drawing a compiled graph: Mermaid and Graphviz DOT text."""

from __future__ import annotations

from flowstore.definition.graph import CompiledNode, Graph

__all__ = ["to_dot", "to_mermaid"]


def _lines(node: CompiledNode) -> list[str]:
    spec = node.spec
    lines = [spec.name]
    if spec.map is not None:
        lines.append(f"map over {spec.map.over}")
    if spec.workflow is not None:
        lines.append(f"runs workflow {spec.workflow}")
    if spec.type is not None:
        lines.append(f"type {spec.type}")
    if node.when is not None:
        lines.append(f"when {node.when.source}")
    return lines


def _edges(graph: Graph) -> list[tuple[str, str, str, bool]]:
    """(from, to, label, dashed): data and order edges, routes, and loops back."""
    edges = []
    for name in graph.order:
        node = graph.nodes[name]
        for parent in node.upstream:
            label = "route" if node.routed_by == parent else ""
            if not label and parent in node.spec.after:
                label = "after"
            edges.append((parent, name, label, node.routed_by == parent))
        if node.spec.loop is not None:
            edges.append((name, node.spec.loop.back_to, f"while {node.spec.loop.while_}", True))
    return edges


def _mermaid_text(text: str) -> str:
    return text.replace('"', "#quot;").replace("|", "#124;")


def to_mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart, top to bottom."""
    # Mermaid reserves some words (`end`): nodes get neutral ids, their names are labels.
    ids = {name: f"n{index}" for index, name in enumerate(graph.order)}
    lines = ["flowchart TD"]
    for name in graph.order:
        node = graph.nodes[name]
        text = "<br/>".join(_mermaid_text(line) for line in _lines(node))
        opening, closing = ('{{"', '"}}') if node.spec.routes else ('["', '"]')
        lines.append(f"    {ids[name]}{opening}{text}{closing}")
    for source, target, label, dashed in _edges(graph):
        arrow = "-.->" if dashed else "-->"
        link = f"{arrow}|{_mermaid_text(label)}|" if label else arrow
        lines.append(f"    {ids[source]} {link} {ids[target]}")
    return "\n".join(lines) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Graph) -> str:
    """The graph in Graphviz DOT."""
    lines = [f"digraph {_dot_string(graph.name)} {{", "    rankdir=TB;", "    node [shape=box];"]
    for name in graph.order:
        node = graph.nodes[name]
        label = "\\n".join(_dot_string(line)[1:-1] for line in _lines(node))
        shape = ", shape=diamond" if node.spec.routes else ""
        lines.append(f'    {_dot_string(name)} [label="{label}"{shape}];')
    for source, target, label, dashed in _edges(graph):
        attributes = [f"label={_dot_string(label)}"] if label else []
        if dashed:
            attributes.append("style=dashed")
        suffix = f" [{', '.join(attributes)}]" if attributes else ""
        lines.append(f"    {_dot_string(source)} -> {_dot_string(target)}{suffix};")
    lines.append("}")
    return "\n".join(lines) + "\n"
