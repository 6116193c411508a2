"""A definition's shape read from the definition alone (as a process without the workflow's
code reads it) is the compiler's: the same edges, routes and loops, for every shape."""

from __future__ import annotations

import pytest

from flowstore import MapOver, Workflow
from flowstore.definition.shape import Shape
from tests.unit.definitions.test_equivalence import HERE, SHAPES, chain


@pytest.mark.parametrize("shape", SHAPES)
def test_the_shape_of_a_definition_is_the_shape_the_compiler_finds(shape: str) -> None:
    workflow = Workflow.load(HERE / "yaml" / f"{shape}.yaml")
    graph = workflow.compile(workflows={"chain": chain().spec})
    from_spec, from_graph = Shape.of_spec(workflow.spec), Shape.of_graph(graph)

    assert {name: set(edges) for name, edges in from_spec.upstream.items()} == {
        name: set(edges) for name, edges in from_graph.upstream.items()
    }
    assert from_spec.loops == from_graph.loops
    assert from_spec.loop_bodies() == from_graph.loop_bodies()
    for name in graph.order:
        assert from_spec.closure(name, "down") == from_graph.closure(name, "down")
        assert from_spec.closure(name, "up") == from_graph.closure(name, "up")


def test_routes_and_loops_are_read_from_the_definition() -> None:
    router = Shape.of_spec(Workflow.load(HERE / "yaml" / "router.yaml").spec)
    assert any(route for edges in router.upstream.values() for _, route in edges)
    loop = Shape.of_spec(Workflow.load(HERE / "yaml" / "loop.yaml").spec)
    assert loop.loops and all(body for body in loop.loop_bodies().values())


def test_after_and_map_edges_are_read_from_the_definition() -> None:
    flow = Workflow("ordered")

    @flow.node
    async def items(n: int) -> list[int]:
        return list(range(n))

    @flow.node(after=["items"])
    async def audit() -> str:
        return "ok"

    @flow.node(map=MapOver(over="items", item="x"))
    async def double(x: int) -> int:
        return 2 * x

    shape = Shape.of_spec(flow.spec)
    assert shape.upstream["audit"] == (("items", False),)
    assert shape.upstream["double"] == (("items", False),)
    assert Shape.of_graph(flow.compile()).upstream == shape.upstream
