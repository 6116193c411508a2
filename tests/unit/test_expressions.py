"""The condition language: what it accepts, what it refuses, and how it evaluates."""

from __future__ import annotations

import re

import pytest

from flowstore.definition.expressions import MAX_BUILT_SIZE, parse_expression
from flowstore.errors import DefinitionError, ExpressionError

VALUES = {
    "classify": "urgent",
    "draft": "Please restart the disk service",
    "score": 7,
    "ticket": {"title": "disk full", "tags": ["ops", "disk"], "priority": None},
    "items": [1, 2, 3],
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("classify == 'urgent'", True),
        ("classify != 'urgent' or score > 5", True),
        ("not (score >= 7 and len(draft) > 100)", True),
        ("1 < score <= 7", True),
        ("'disk' in ticket['tags']", True),
        ("'web' not in ticket['tags']", True),
        ("ticket['priority'] is None", True),
        ("ticket['title'] is not None", True),
        ("score * 2 + 1 - 3 / 3", 14.0),
        ("score // 2 % 2", 1),
        ("-score + +1", -6),
        ("items[-1]", 3),
        ("items[1:]", [2, 3]),
        ("items[::2]", [1, 3]),
        ("[score, 'x'][0]", 7),
        ("{'a': score}['a']", 7),
        ("(1, 2)[1]", 2),
        ("'high' if score > 5 else 'low'", "high"),
        ("len(items) == 3 and sum(items) == 6", True),
        ("max(items) - min(items)", 2),
        ("lower(classify) == 'urgent' and upper('a') == 'A'", True),
        ("startswith(draft, 'Please') and endswith(draft, 'service')", True),
        ("strip('  x ') == 'x'", True),
        ("any([False, score]) and all([1, 'a'])", True),
        ("abs(-2) + round(2.6) + int('3') + float('0.5')", 8.5),
        ("str(score) + 'x'", "7x"),
        ("bool(0)", False),
        ("'ab' * 3", "ababab"),
        ("score and classify", "urgent"),
        ("0 or ''", ""),
    ],
)
def test_expressions_evaluate_like_python(source: str, expected: object) -> None:
    assert parse_expression(source).evaluate(VALUES) == expected


def test_an_expression_knows_the_names_it_reads_and_has_a_canonical_form() -> None:
    expression = parse_expression("classify=='urgent'  and len( draft )>2")
    assert expression.names == {"classify", "draft"}
    assert expression.source == "classify == 'urgent' and len(draft) > 2"
    assert expression == parse_expression("classify == 'urgent' and len(draft) > 2")


@pytest.mark.parametrize(
    ("source", "message", "column"),
    [
        ("ticket.title", "attribute access is not allowed", 1),
        ("ticket['a'].__class__", "attribute access is not allowed", 1),
        ("__import__('os')", "cannot call '__import__'", 1),
        ("open('/etc/passwd')", "cannot call 'open'", 1),
        ("eval('1')", "cannot call 'eval'", 1),
        ("len(items, key=1)", "keyword arguments are not allowed", 1),
        ("(lambda: 1)()", "cannot call", 1),
        ("[x for x in items]", "comprehensions are not allowed", 1),
        ("2 ** 100", "'**' is not allowed", None),
        ("(x := 1)", "assignment is not allowed", 2),
        ("f'{score}'", "f-strings are not allowed", 1),
        ("{1, 2}", "set literals are not allowed", 1),
        ("[*items]", "'*' unpacking is not allowed", 2),
        ("{**ticket}", "'**' unpacking is not allowed", 1),
        ("score is 1", "'is' compares with None only", 1),
        ("b'bytes'", "literal b'bytes' is not allowed", 1),
        ("__builtins__", "name '__builtins__' is not allowed", 1),
        ("score ==", "invalid expression syntax", None),
        ("score = 1", "invalid expression syntax", None),
        ("", "the expression is empty", None),
        ("   ", "the expression is empty", None),
    ],
)
def test_unsafe_or_malformed_expressions_are_refused_with_where(
    source: str, message: str, column: int | None
) -> None:
    with pytest.raises(DefinitionError, match=re.escape(message)) as caught:
        parse_expression(source)
    [problem] = caught.value.problems
    if column is not None:
        assert problem.column == column


@pytest.mark.parametrize("value", [None, 3, ["a"], {"a": 1}])
def test_an_expression_must_be_a_string(value: object) -> None:
    with pytest.raises(DefinitionError, match="an expression must be a string"):
        parse_expression(value)


def test_parsing_cost_is_bounded() -> None:
    with pytest.raises(DefinitionError, match="characters, over"):
        parse_expression("a or " * 500 + "a")
    with pytest.raises(DefinitionError, match="too complex"):
        parse_expression("[" + ", ".join(["1"] * 400) + "]")
    with pytest.raises(DefinitionError, match=r"nested too deeply|too complex|syntax"):
        parse_expression("[" * 60 + "]" * 60)
    with pytest.raises(DefinitionError, match="nested too deeply"):
        parse_expression(" + ".join(["1"] * 100))


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing == 1", "no value named 'missing'"),
        ("len == 1", "'len' is a function"),
        ("ticket['nope']", "KeyError"),
        ("items[10]", "IndexError"),
        ("score / 0", "ZeroDivisionError"),
        ("classify + 1", "TypeError"),
        ("int('x')", "ValueError"),
        ("'%s' % score", "'%' formatting of strings is not allowed"),
        (f"'ab' * {MAX_BUILT_SIZE}", "over 100,000"),
        (f"items * {MAX_BUILT_SIZE}", "over 100,000"),
    ],
)
def test_evaluation_failures_are_expression_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        parse_expression(source).evaluate(VALUES)
