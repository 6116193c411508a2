"""Mermaid and DOT drawings of compiled graphs."""

from __future__ import annotations

import pydot
import pytest

from flowstore.definition.builder import Workflow
from flowstore.definition.export import to_dot, to_mermaid
from tests.unit.definitions.test_equivalence import SHAPES, conditional, loop, router

# pydot's grammar still calls pyparsing's old camelCase names.
pytestmark = pytest.mark.filterwarnings("ignore:.*deprecated - use:DeprecationWarning")


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_draws_as_valid_dot_with_every_node_and_edge(shape: str) -> None:
    graph = SHAPES[shape]().compile()
    [parsed] = pydot.graph_from_dot_data(to_dot(graph))
    names = {node.get_name().strip('"') for node in parsed.get_nodes()} - {"node"}
    assert names == set(graph.nodes)
    edges = {
        (e.get_source().strip('"'), e.get_destination().strip('"')) for e in parsed.get_edges()
    }
    expected = {(parent, name) for name, node in graph.nodes.items() for parent in node.upstream}
    expected |= {
        (name, node.spec.loop.back_to) for name, node in graph.nodes.items() if node.spec.loop
    }
    assert edges == expected


def test_mermaid_shows_conditions_routes_and_loops() -> None:
    drawn = to_mermaid(conditional().compile())
    assert drawn.splitlines() == [
        "flowchart TD",
        '    n0["classify"]',
        '    n1["draft"]',
        "    n2[\"page_oncall<br/>when classify == 'urgent'\"]",
        "    n0 --> n1",
        "    n1 --> n2",
    ]
    routed = to_mermaid(router().compile())
    assert '    n1{{"route"}}' in routed
    assert "    n1 -.->|route| n2" in routed
    assert "    n1 --> n0" in to_mermaid(loop().compile()).replace(
        "-.->|while not act['done']|", "-->"
    )


def test_names_mermaid_reserves_are_safe() -> None:
    flow = Workflow("reserved")

    async def end(ticket: str) -> str:
        return ticket

    flow.node(end)
    assert '    n0["end"]' in to_mermaid(flow.compile())


PARENT = SHAPES["subworkflow"]()
"""A module-level workflow, for `flowstore graph tests.unit.definitions.test_export:PARENT`."""
