"""The Python API: binding by parameter name, node kinds, custom node types, and validation."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from flowstore.definition.builder import Workflow
from flowstore.definition.node_types import find_node_type, node_type, registered_node_types
from flowstore.definition.validation import validate_arguments, validate_inputs, validate_output
from flowstore.errors import DefinitionError, InvalidValue


class NodeContext:
    """Stands in for the runtime's context class: recognised by its name."""


class Order(BaseModel):
    sku: str
    quantity: int = 1


def test_parameters_bind_to_nodes_inputs_and_the_context() -> None:
    flow = Workflow("binding")

    @flow.node
    async def fetch(order: Order, region: str = "eu") -> dict[str, Any]:
        return {"sku": order.sku}

    @flow.node(after=["fetch"])
    def audit(ctx: NodeContext, note: str) -> None:
        return None

    @flow.node
    async def tokens(fetch: dict[str, Any]) -> AsyncIterator[str]:
        yield "a"

    @flow.node
    def lines(fetch: dict[str, Any]) -> Iterator[str]:
        yield "a"

    spec = flow.spec
    assert spec.inputs == {"order": f"{__name__}:Order", "note": "str"}
    nodes = {node.name: node for node in spec.nodes}
    assert nodes["fetch"].inputs == {"order": "order"}  # `region` keeps its default
    assert nodes["audit"].inputs == {"note": "note"}
    assert nodes["audit"].after == ("fetch",)

    graph = flow.compile()
    assert graph.nodes["audit"].context_param == "ctx"
    assert graph.nodes["audit"].upstream == ("fetch",)
    assert {name: graph.nodes[name].style for name in graph.order} == {
        "fetch": "async",
        "audit": "sync",
        "tokens": "async_generator",
        "lines": "sync_generator",
    }
    assert graph.inputs == {"order": Order, "note": str}


def test_inputs_are_validated_and_converted() -> None:
    flow = Workflow("orders")

    @flow.node
    async def place(order: Order, count: int) -> int:
        return count

    graph = flow.compile()
    checked = validate_inputs(graph, {"order": {"sku": "a-1"}, "count": "3"})
    assert checked == {"order": Order(sku="a-1"), "count": 3}
    with pytest.raises(InvalidValue) as caught:
        validate_inputs(graph, {"order": {"quantity": "x"}, "extra": 1})
    message = str(caught.value)
    assert message.startswith("workflow 'orders': invalid inputs: ")
    assert "order.sku: missing" in message
    assert "order.quantity: Input should be a valid integer" in message
    assert "count: missing" in message
    assert "extra: unknown input" in message


def test_an_input_model_validates_all_inputs_at_once() -> None:
    flow = Workflow("modelled", input_model=Order)

    @flow.node
    async def place(sku: str, quantity: int) -> str:
        return sku * quantity

    graph = flow.compile()
    assert graph.input_model is Order
    assert flow.spec.input_model == f"{__name__}:Order"
    assert validate_inputs(graph, {"sku": "x"}) == {"sku": "x", "quantity": 1}
    with pytest.raises(InvalidValue, match="sku: missing"):
        validate_inputs(graph, {})


def test_node_arguments_and_outputs_are_validated() -> None:
    flow = Workflow("typed")

    @flow.node
    async def count(text: str) -> int:
        return len(text)

    @flow.node
    async def double(count: int) -> int:
        return count * 2

    graph = flow.compile()
    node = graph.nodes["double"]
    assert validate_arguments(graph, node, {"count": "4"}) == {"count": 4}
    with pytest.raises(InvalidValue, match="node 'double': parameter 'count' \\(from 'count'\\)"):
        validate_arguments(graph, node, {"count": "four"})
    assert validate_output(graph, node, "8") == 8
    with pytest.raises(
        InvalidValue, match="node 'double': output: Input should be a valid integer"
    ):
        validate_output(graph, node, [1])


def test_a_loaded_workflow_gets_no_python_nodes() -> None:
    loaded = Workflow.load(
        {
            "name": "x",
            "nodes": [
                {
                    "name": "a",
                    "call": "tests.unit.definitions.shapes:classify",
                    "inputs": ["ticket"],
                }
            ],
            "inputs": {"ticket": "str"},
        }
    )
    with pytest.raises(DefinitionError, match="cannot get nodes in Python"):
        loaded.node(lambda: None)


def test_custom_node_types_are_registered_configured_and_checked() -> None:
    @node_type("test-greeter")
    class Greeter:
        class Config(BaseModel):
            greeting: str
            times: int = 1

        def build(self, config: Config) -> Any:
            async def greet(name: str) -> str:
                return " ".join([f"{config.greeting} {name}"] * config.times)

            return greet

    assert find_node_type("test-greeter") is Greeter
    assert "test-greeter" in registered_node_types()
    flow = Workflow("greetings")
    flow.custom("hello", "test-greeter", config={"greeting": "hi", "times": 2}, inputs=["name"])
    graph = flow.compile()
    assert graph.nodes["hello"].style == "async"
    assert [param.name for param in graph.nodes["hello"].params] == ["name"]
    assert graph.inputs == {"name": Any}

    broken = Workflow("broken")
    broken.custom("hello", "test-greeter", config={"times": "x"}, inputs=["name"])
    with pytest.raises(DefinitionError) as caught:
        broken.compile()
    fields = {(problem.node, problem.field) for problem in caught.value.problems}
    assert fields == {("hello", "config.greeting"), ("hello", "config.times")}


def test_a_node_type_without_config_or_build_is_refused() -> None:
    with pytest.raises(TypeError, match="Config must be a Pydantic model"):
        node_type("bad")(type("Bad", (), {"build": lambda self, config: None}))


def test_node_types_are_found_through_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    class Entry:
        name = "test-plugin"

        def load(self) -> type:
            class Plugin:
                class Config(BaseModel):
                    pass

                def build(self, config: BaseModel) -> Any:
                    return lambda: "plugged"

            return Plugin

    def fake_entry_points(*, group: str, name: str | None = None) -> list[Entry]:
        assert group == "flowstore.node_types"
        return [Entry()] if name in (None, "test-plugin") else []

    monkeypatch.setattr("flowstore.definition.node_types.entry_points", fake_entry_points)
    found = find_node_type("test-plugin")
    assert found is not None and found.__name__ == "Plugin"


def test_optional_and_union_parameters_accept_what_they_name() -> None:
    flow = Workflow("unions")

    @flow.node
    async def text(ticket: str) -> str:
        return ticket

    @flow.node
    async def number(ticket: str) -> int | None:
        return None

    @flow.node
    async def takes(text: str | None, number: int | str | None) -> None:
        return None

    flow.compile()
    wrong = Workflow("wrong")
    wrong.node(text)

    @wrong.node
    async def strict(text: int | bytes) -> None:
        return None

    with pytest.raises(DefinitionError, match=re.escape("expects int | bytes but node 'text'")):
        wrong.compile()


def test_inputs_beyond_named_parameters_go_to_keyword_arguments() -> None:
    loaded = Workflow.load(
        {
            "name": "kwargs",
            "inputs": {"a": "int", "b": "int"},
            "nodes": [{"name": "gather", "call": "benchmarks.steps:gather", "inputs": ["a", "b"]}],
        }
    )
    params = loaded.compile().nodes["gather"].params
    assert [(param.name, param.source) for param in params] == [("a", "a"), ("b", "b")]


def test_two_functions_under_one_import_path_are_refused_not_merged() -> None:
    flow = Workflow("factory")

    def worker(index: int) -> None:
        @flow.node(name=f"w{index}")
        async def work(n: int) -> int:
            return n * index

    worker(1)
    worker(2)
    with pytest.raises(DefinitionError, match=r"nodes 'w1' and 'w2' are different functions"):
        flow.compile()


def test_a_parameter_named_almost_like_a_node_is_refused_as_a_typo() -> None:
    flow = Workflow("triage")

    @flow.node
    async def classify(ticket: str) -> str:
        return ticket

    @flow.node
    async def draft(clasify: str, ticket: str) -> str:
        return clasify

    with pytest.raises(DefinitionError) as caught:
        flow.compile()
    [problem] = caught.value.problems
    assert (problem.node, problem.field, problem.file) == ("draft", "clasify", __file__)
    assert problem.line == draft.__code__.co_firstlineno
    assert "did you mean node 'classify'?" in problem.message
    assert "Workflow('triage', inputs={'clasify': ...})" in problem.message


def test_a_parameter_named_almost_like_a_resource_is_refused_too() -> None:
    flow = Workflow("search", resources=["http_client"])

    @flow.node
    async def fetch(query: str, http_clinet: Any) -> str:
        return query

    with pytest.raises(DefinitionError, match="did you mean resource 'http_client'"):
        flow.compile()


def test_a_declared_input_may_be_named_like_a_node() -> None:
    flow = Workflow("triage", inputs={"clasify": bool, "limit": "int"})

    @flow.node
    async def classify(ticket: str) -> str:
        return ticket

    @flow.node
    async def draft(clasify: bool, classify: str) -> str:
        return classify

    graph = flow.compile()
    assert graph.spec.inputs == {"clasify": "bool", "limit": "int", "ticket": "str"}
