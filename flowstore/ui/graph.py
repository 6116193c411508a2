"""A run's graph as SVG boxes, each node coloured by its status: the same nodes and edges as
`flowstore graph` draws (data and `after` edges, routes, loops back), laid out in layers.

It is drawn from the definition the run stored, so the inspector needs none of the
workflow's code. Layer by layer from the top, each node one row below its lowest parent;
a loop's edge back up is dashed, as a route's is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Drawing", "draw"]

WIDTH, HEIGHT, GAP_X, GAP_Y = 150, 30, 20, 26


@dataclass(frozen=True, slots=True)
class Box:
    name: str
    x: int
    y: int
    status: str


@dataclass(frozen=True, slots=True)
class Edge:
    x1: float
    y1: float
    x2: float
    y2: float
    dashed: bool


@dataclass(frozen=True, slots=True)
class Drawing:
    """What the run page's template draws; `width` and `height` in SVG units."""

    boxes: list[Box]
    edges: list[Edge]
    width: int
    height: int


def draw(spec: Mapping[str, Any], statuses: Mapping[str, str]) -> Drawing:
    """The drawing of a stored definition (`flowstore_graphs.spec`), each node with its
    status in `statuses` (by node name; `pending` for a node not started). A definition
    this version of flowstore cannot read is not drawn."""
    from pydantic import ValidationError

    from flowstore.definition.shape import Shape
    from flowstore.definition.spec import WorkflowSpec

    try:
        shape = Shape.of_spec(WorkflowSpec.model_validate(spec))
    except ValidationError:
        return Drawing([], [], 0, 0)
    names = list(shape.upstream)
    parents = {name: list(edges) for name, edges in shape.upstream.items()}
    loops = list(shape.loops.items())
    rows: dict[int, list[str]] = {}
    for name, row in _layers(names, parents).items():
        rows.setdefault(row, []).append(name)
    boxes: dict[str, Box] = {}
    for row, members in rows.items():
        for column, name in enumerate(members):
            x = GAP_X + column * (WIDTH + GAP_X)
            y = GAP_Y + row * (HEIGHT + GAP_Y)
            boxes[name] = Box(name, x, y, statuses.get(name, "pending"))
    edges = []
    for name, incoming in parents.items():
        for parent, dashed in incoming:
            top, bottom = boxes[parent], boxes[name]
            edges.append(
                Edge(
                    top.x + WIDTH / 2,
                    top.y + HEIGHT,
                    bottom.x + WIDTH / 2,
                    bottom.y,
                    dashed,
                )
            )
    for name, back_to in loops:
        start, end = boxes[name], boxes[back_to]
        edges.append(Edge(start.x + WIDTH, start.y + HEIGHT / 2, end.x + WIDTH, end.y, True))
    widest = max((len(members) for members in rows.values()), default=0)
    return Drawing(
        list(boxes.values()),
        edges,
        width=GAP_X + widest * (WIDTH + GAP_X),
        height=GAP_Y + len(rows) * (HEIGHT + GAP_Y),
    )


def _layers(names: list[str], parents: Mapping[str, list[tuple[str, bool]]]) -> dict[str, int]:
    """Each node's row: one below its lowest parent (in definition order where a row holds
    several). Without recursion: a chain of thousands of nodes is drawn as well."""
    waiting = {name: len(parents[name]) for name in names}
    children: dict[str, list[str]] = {name: [] for name in names}
    for name in names:
        for parent, _ in parents[name]:
            children[parent].append(name)
    layer = {name: 0 for name in names if waiting[name] == 0}
    ready = [name for name in names if waiting[name] == 0]
    while ready:
        name = ready.pop()
        for child in children[name]:
            layer[child] = max(layer.get(child, 0), layer[name] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    below = max(layer.values(), default=-1) + 1
    for name in names:  # a cycle the definition should not have: drawn below the rest
        layer.setdefault(name, below)
    return {name: layer[name] for name in names}
