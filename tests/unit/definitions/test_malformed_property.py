"""Generated malformed definitions and expressions end in DefinitionError, never anything else.

Together these tests feed well over 2,000 generated inputs: random expressions and token soups,
random JSON-like documents, mutations of a valid definition, and random YAML/JSON file text.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowstore.definition.builder import Workflow
from flowstore.definition.expressions import parse_expression
from flowstore.errors import DefinitionError, ExpressionError

SETTINGS = settings(
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    derandomize=True,
)
TOKENS = [
    "a",
    "b",
    "ticket",
    "classify",
    "len",
    "open",
    "__import__",
    "__class__",
    "lambda",
    "x:",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    ":",
    "'",
    '"',
    "and",
    "or",
    "not",
    "in",
    "is",
    "None",
    "True",
    "1",
    "0",
    "-1",
    "1e308",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "==",
    "<",
    ">=",
    "!=",
    "if",
    "else",
    "for",
    "x",
    "=",
    ":=",
    "f'",
    "{a}",
    "\\",
    "\n",
    " ",
    "@",
    "yield",
    "await",
    "import",
    "os",
    "*a",
    "**a",
]
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=25,
)
VALID: dict[str, Any] = {
    "name": "fuzz",
    "inputs": {"ticket": "str"},
    "nodes": [
        {
            "name": "classify",
            "call": "tests.unit.definitions.shapes:classify",
            "inputs": ["ticket"],
        },
        {
            "name": "draft",
            "call": "tests.unit.definitions.shapes:draft",
            "inputs": ["classify", "ticket"],
            "when": "classify == 'urgent'",
            "retry": {"attempts": 2},
        },
    ],
}


OUTCOMES = {"refused": 0, "compiled": 0}


def _refused_or_valid(source: Any) -> None:
    problems: tuple[Any, ...] | None = None
    try:
        Workflow.load(source).compile()
    except DefinitionError as error:
        problems = error.problems
    OUTCOMES["compiled" if problems is None else "refused"] += 1
    if problems is not None:
        assert problems
        assert all(problem.message for problem in problems)


@settings(SETTINGS, max_examples=400)
@given(st.text(max_size=80))
def test_random_text_expressions(source: str) -> None:
    _parse_then_evaluate(source)


@settings(SETTINGS, max_examples=600)
@given(st.lists(st.sampled_from(TOKENS), max_size=15).map(" ".join))
def test_token_soup_expressions(source: str) -> None:
    _parse_then_evaluate(source)


def _parse_then_evaluate(source: str) -> None:
    try:
        expression = parse_expression(source)
    except DefinitionError as error:
        problems = error.problems
    else:
        with contextlib.suppress(ExpressionError):
            expression.evaluate({name: 3 for name in expression.names})
        return
    assert len(problems) == 1


@settings(SETTINGS, max_examples=500)
@given(JSON_VALUES)
def test_random_documents(document: Any) -> None:
    _refused_or_valid(document if isinstance(document, dict) else {"nodes": document})


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        target: Any = document
        path = draw(
            st.lists(
                st.sampled_from(
                    [
                        "nodes",
                        0,
                        1,
                        "inputs",
                        "retry",
                        "when",
                        "name",
                        "call",
                        "loop",
                        "map",
                        "attempts",
                    ]
                ),
                max_size=3,
            )
        )
        for step in path:
            if (
                isinstance(target, dict)
                and step in target
                and isinstance(target[step], dict | list)
            ) or (isinstance(target, list) and isinstance(step, int) and step < len(target)):
                target = target[step]
        if isinstance(target, dict):
            key = draw(st.sampled_from([*target.keys(), "when", "loop", "map", "routes", "extra"]))
            if draw(st.booleans()) and key in target:
                del target[key]
            else:
                target[key] = draw(
                    JSON_VALUES
                    | st.sampled_from(
                        ["classify", "ticket", "nope", "a.b", "1 +", "x:y", {"back_to": "classify"}]
                    )
                )
        elif isinstance(target, list) and target:
            target[draw(st.integers(0, len(target) - 1))] = draw(JSON_VALUES)
    return document


@settings(SETTINGS, max_examples=500)
@given(mutated())
def test_mutated_definitions(document: dict[str, Any]) -> None:
    _refused_or_valid(document)


@settings(SETTINGS, max_examples=300)
@given(st.text(max_size=200), st.sampled_from([".yaml", ".json"]))
def test_random_file_text(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / f"definition{suffix}"
        path.write_text(text, encoding="utf-8")
        _refused_or_valid(path)
