"""The same workflow written in Python and in YAML (and JSON) gives equal specs and hashes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flowstore.definition.builder import Workflow
from flowstore.definition.spec import (
    Breaker,
    Cache,
    ExecutionConfig,
    Fallback,
    Loop,
    MapOver,
    Retry,
)
from tests.unit.definitions import shapes

HERE = Path(__file__).parent


def chain() -> Workflow:
    flow = Workflow(
        "chain",
        version="2",
        config=ExecutionConfig(strategy="sequential", secret_fields=("api_key",)),
    )
    flow.node(shapes.classify)
    flow.node(retry=Retry(attempts=5, backoff=0.5))(shapes.draft)
    flow.node(timeout=30)(shapes.review)
    return flow


def diamond() -> Workflow:
    flow = Workflow("diamond")
    for function in (shapes.source, shapes.left, shapes.right):
        flow.node(function)
    flow.node(join="all_done")(shapes.join)
    return flow


def conditional() -> Workflow:
    flow = Workflow("conditional")
    flow.node(shapes.classify)
    flow.node(cache=Cache(ttl=3600))(shapes.draft)
    flow.node(when="classify == 'urgent'")(shapes.page_oncall)
    return flow


def router() -> Workflow:
    flow = Workflow("router", output="escalate")
    flow.node(shapes.classify)
    flow.node(routes=["escalate", "archive"])(shapes.route)
    flow.node(breaker=Breaker(name="pager", failure_threshold=3))(shapes.escalate)
    flow.node(fallback=Fallback(value=None))(shapes.archive)
    return flow


def loop() -> Workflow:
    flow = Workflow("loop")
    flow.node(shapes.think)
    flow.node(loop=Loop(back_to="think", while_="not act['done']", max_iterations=5))(shapes.act)
    return flow


def map_() -> Workflow:
    flow = Workflow("map")
    flow.node(shapes.split)
    flow.node(map=MapOver(over="split", concurrency=4))(shapes.shout)
    flow.node(shapes.collect)
    return flow


def subworkflow() -> Workflow:
    flow = Workflow("parent")
    flow.subworkflow("child", chain(), inputs=["ticket"])
    flow.node(shapes.summarize)
    return flow


SHAPES: dict[str, Callable[[], Workflow]] = {
    "chain": chain,
    "diamond": diamond,
    "conditional": conditional,
    "router": router,
    "loop": loop,
    "map": map_,
    "subworkflow": subworkflow,
}


@pytest.mark.parametrize("suffix", ["yaml", "json"])
@pytest.mark.parametrize("shape", SHAPES)
def test_python_and_dsl_give_equal_specs_and_hashes(shape: str, suffix: str) -> None:
    in_python = SHAPES[shape]()
    in_file = Workflow.load(HERE / suffix / f"{shape}.{suffix}")

    assert in_file.spec == in_python.spec
    assert in_file.spec.canonical_json() == in_python.spec.canonical_json()
    known = {"chain": chain().spec}
    python_graph = in_python.compile()
    file_graph = in_file.compile(workflows=known)
    assert file_graph.hash == python_graph.hash == in_python.spec.digest()
    assert file_graph.order == python_graph.order
    assert {name: node.upstream for name, node in file_graph.nodes.items()} == {
        name: node.upstream for name, node in python_graph.nodes.items()
    }


def test_the_hash_is_the_same_in_a_fresh_process() -> None:
    import subprocess
    import sys

    code = (
        "from flowstore.definition.builder import Workflow;"
        f"print(Workflow.load({str(HERE / 'yaml' / 'router.yaml')!r}).spec.digest())"
    )
    printed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE.parents[2],
    )
    assert printed.stdout.strip() == router().spec.digest()


def test_shapes_compile_to_the_expected_graphs() -> None:
    graph = diamond().compile()
    assert graph.order == ("source", "left", "right", "join")
    assert graph.nodes["join"].upstream == ("left", "right")
    assert graph.nodes["source"].downstream == ("left", "right")
    assert graph.output == "join"
    assert graph.nodes["left"].style == "sync"
    assert graph.nodes["source"].style == "async"

    routed = router().compile()
    assert routed.nodes["escalate"].routed_by == "route"
    assert routed.nodes["escalate"].upstream == ("route",)

    mapped = map_().compile()
    assert mapped.nodes["shout"].upstream == ("split",)
    assert [p.name for p in mapped.nodes["shout"].params] == ["item"]

    looped = loop().compile()
    assert looped.nodes["act"].loop_while is not None
    assert looped.nodes["act"].loop_while.names == {"act"}

    child = subworkflow().compile()
    assert child.nodes["child"].function is None
    assert child.inputs == {"ticket": str}


def test_the_order_of_mapping_keys_does_not_change_the_hash() -> None:
    def definition(reverse: bool) -> dict[str, object]:
        inputs = {"ticket": "str", "count": "int"}
        node_inputs = {"classify": "classify", "ticket": "ticket"}
        if reverse:
            inputs = dict(reversed(inputs.items()))
            node_inputs = dict(reversed(node_inputs.items()))
        return {
            "name": "ordered",
            "inputs": inputs,
            "nodes": [
                {
                    "name": "classify",
                    "call": "tests.unit.definitions.shapes:classify",
                    "inputs": ["ticket"],
                },
                {
                    "name": "draft",
                    "call": "tests.unit.definitions.shapes:draft",
                    "inputs": node_inputs,
                    "fallback": {"value": {"b": 1, "a": [{"d": 2, "c": 3}]}},
                },
            ],
        }

    forward, backward = Workflow.load(definition(False)), Workflow.load(definition(True))
    assert forward.spec.digest() == backward.spec.digest()
    assert '"fallback":{"value":{"a":[{"c":3,"d":2}],"b":1}}' in forward.spec.canonical_json()
