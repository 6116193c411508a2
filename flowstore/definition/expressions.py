"""Conditions: a small, safe expression language over a run's inputs and node outputs.

An expression such as `classify == 'urgent' and len(draft) > 20` is data. It is parsed into
Python's syntax tree (never compiled or evaluated by Python), checked against a whitelist, and
evaluated by the walker below. Allowed: literals (strings, numbers, booleans, None, lists,
tuples, dicts), names (workflow inputs and node outputs), `and`/`or`/`not`, comparisons and
`in`, `is None`, arithmetic (`+ - * / // %`), indexing and keys (`x[0]`, `x['key']`, slices),
`a if c else b`, and calls of a fixed set of pure functions (`FUNCTIONS`). Not allowed: attribute
access, other calls, comprehensions, lambdas, assignment, f-strings, `**`.

Cost is bounded: the source length, the number of syntax nodes and their nesting are capped when
parsing, and a repetition or concatenation that would build a value over `MAX_BUILT_SIZE`
items is refused while evaluating.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from flowstore.errors import DefinitionError, ExpressionError, Problem

__all__ = [
    "FUNCTIONS",
    "MAX_BUILT_SIZE",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_NODES",
    "Expression",
    "parse_expression",
]

MAX_LENGTH: Final = 2000
"""The longest expression source, in characters."""

MAX_NODES: Final = 300
"""The most syntax nodes one expression may have."""

MAX_DEPTH: Final = 40
"""The deepest nesting of syntax nodes."""

MAX_BUILT_SIZE: Final = 100_000
"""The largest string or list an expression may build by `*` or `+`."""


def _lower(text: str) -> str:
    return text.lower()


def _upper(text: str) -> str:
    return text.upper()


def _strip(text: str) -> str:
    return text.strip()


def _startswith(text: str, prefix: str) -> bool:
    return text.startswith(prefix)


def _endswith(text: str, suffix: str) -> bool:
    return text.endswith(suffix)


FUNCTIONS: Final[Mapping[str, Callable[..., Any]]] = {
    "abs": abs,
    "all": all,
    "any": any,
    "bool": bool,
    "endswith": _endswith,
    "float": float,
    "int": int,
    "len": len,
    "lower": _lower,
    "max": max,
    "min": min,
    "round": round,
    "startswith": _startswith,
    "str": str,
    "strip": _strip,
    "sum": sum,
    "upper": _upper,
}
"""The functions an expression may call, by name: pure and cheap on bounded inputs."""

_BINARY: Final[Mapping[type[ast.operator], Callable[[Any, Any], Any]]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_UNARY: Final[Mapping[type[ast.unaryop], Callable[[Any], Any]]] = {
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}
_COMPARE: Final[Mapping[type[ast.cmpop], Callable[[Any, Any], Any]]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda left, right: left in right,
    ast.NotIn: lambda left, right: left not in right,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_ALLOWED: Final = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.BinOp,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Subscript,
    ast.Slice,
    ast.IfExp,
    ast.Call,
    *_BINARY,
    *_UNARY,
    *_COMPARE,
)
_REFUSED: Final[Mapping[type[ast.AST], str]] = {
    ast.Attribute: "attribute access is not allowed (write x['key'] to read a key)",
    ast.Pow: "'**' is not allowed",
    ast.Lambda: "lambdas are not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.NamedExpr: "assignment is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Starred: "'*' unpacking is not allowed",
    ast.Set: "set literals are not allowed",
    ast.Await: "'await' is not allowed",
}


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    """A parsed, checked expression.

    Attributes:
        source: The expression in canonical form (spacing normalized), as stored in specs.
        names: The names it reads: workflow inputs and node outputs.
    """

    source: str
    names: frozenset[str]
    _tree: ast.expr

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    def evaluate(self, values: Mapping[str, Any]) -> Any:
        """Evaluate against the run's values by name.

        Raises:
            ExpressionError: A name has no value, or an operation failed (a missing key, a
                type mismatch, division by zero, a value over the size bound).
        """
        try:
            return _evaluate(self._tree, values)
        except ExpressionError:
            raise
        except (ArithmeticError, LookupError, TypeError, ValueError) as error:
            raise ExpressionError(
                f"{self.source!r} failed: {type(error).__name__}: {error}"
            ) from error


def parse_expression(source: object) -> Expression:
    """Parse and check an expression.

    Raises:
        DefinitionError: One problem, with the 1-based column in the expression where known.
    """
    if not isinstance(source, str):
        raise DefinitionError([Problem(f"an expression must be a string, not {_kind(source)}")])
    if not source.strip():
        raise DefinitionError([Problem("the expression is empty")])
    if len(source) > MAX_LENGTH:
        raise DefinitionError(
            [Problem(f"the expression is {len(source):,} characters, over {MAX_LENGTH:,}")]
        )
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as error:
        column = error.offset if error.offset and error.lineno == 1 else None
        raise DefinitionError(
            [Problem(f"invalid expression syntax: {error.msg}", column=column)]
        ) from None
    except (RecursionError, MemoryError, ValueError) as error:
        raise DefinitionError(
            [Problem(f"the expression cannot be parsed: {type(error).__name__}")]
        ) from None
    names = _check(tree)
    return Expression(source=ast.unparse(tree), names=frozenset(names), _tree=tree.body)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _check(tree: ast.Expression) -> set[str]:
    """Refuse anything outside the whitelist; return the names read."""
    names: set[str] = set()
    functions: set[int] = set()  # the Name nodes that are called: not values the run provides
    count = 0
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise DefinitionError(
                [Problem(f"the expression is too complex (over {MAX_NODES} syntax nodes)")]
            )
        if depth > MAX_DEPTH:
            raise DefinitionError(
                [Problem(f"the expression is nested too deeply (over {MAX_DEPTH} levels)")]
            )
        _check_node(node, names, functions)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return names


def _check_node(node: ast.AST, names: set[str], functions: set[int]) -> None:
    column = getattr(node, "col_offset", None)
    at = None if column is None else column + 1
    if type(node) in _REFUSED:
        raise DefinitionError([Problem(_REFUSED[type(node)], column=at)])
    if not isinstance(node, _ALLOWED):
        raise DefinitionError(
            [Problem(f"{type(node).__name__} is not allowed in an expression", column=at)]
        )
    if isinstance(node, ast.Constant) and not isinstance(
        node.value, str | int | float | bool | type(None)
    ):
        raise DefinitionError(
            [Problem(f"literal {node.value!r} is not allowed in an expression", column=at)]
        )
    if isinstance(node, ast.Dict) and any(key is None for key in node.keys):
        raise DefinitionError([Problem("'**' unpacking is not allowed", column=at)])
    if isinstance(node, ast.Name):
        if node.id.startswith("__"):
            raise DefinitionError([Problem(f"name {node.id!r} is not allowed", column=at)])
        if id(node) not in functions:
            names.add(node.id)
    if isinstance(node, ast.Call):
        function = node.func
        if not isinstance(function, ast.Name) or function.id not in FUNCTIONS:
            shown = function.id if isinstance(function, ast.Name) else ast.unparse(function)
            allowed = ", ".join(sorted(FUNCTIONS))
            raise DefinitionError(
                [Problem(f"cannot call {shown!r}: the functions are {allowed}", column=at)]
            )
        if node.keywords:
            raise DefinitionError([Problem("keyword arguments are not allowed", column=at)])
        functions.add(id(function))
    if isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.Is | ast.IsNot) and not (
                isinstance(right, ast.Constant) and right.value is None
            ):
                raise DefinitionError(
                    [Problem("'is' compares with None only (write '==' otherwise)", column=at)]
                )


def _evaluate(node: ast.expr, values: Mapping[str, Any]) -> Any:
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name):
            if name in values:
                return values[name]
            if name in FUNCTIONS:
                raise ExpressionError(f"{name!r} is a function: call it, as {name}(...)")
            raise ExpressionError(f"no value named {name!r} (known: {', '.join(sorted(values))})")
        case ast.BoolOp(op=ast.And(), values=operands):
            result: Any = True
            for operand in operands:
                result = _evaluate(operand, values)
                if not result:
                    return result
            return result
        case ast.BoolOp(values=operands):  # or
            result = False
            for operand in operands:
                result = _evaluate(operand, values)
                if result:
                    return result
            return result
        case ast.UnaryOp(op=op, operand=operand):
            return _UNARY[type(op)](_evaluate(operand, values))
        case ast.BinOp(left=left, op=op, right=right):
            return _binary(type(op), _evaluate(left, values), _evaluate(right, values))
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            current = _evaluate(left, values)
            for comparison, comparator in zip(ops, comparators, strict=True):
                following = _evaluate(comparator, values)
                if not _COMPARE[type(comparison)](current, following):
                    return False
                current = following
            return True
        case ast.IfExp(test=test, body=body, orelse=orelse):
            return _evaluate(body if _evaluate(test, values) else orelse, values)
        case ast.Subscript(value=container, slice=ast.Slice(lower=lower, upper=upper, step=step)):
            bounds = [
                None if part is None else _evaluate(part, values) for part in (lower, upper, step)
            ]
            return _evaluate(container, values)[slice(*bounds)]
        case ast.Subscript(value=container, slice=index):
            return _evaluate(container, values)[_evaluate(index, values)]
        case ast.List(elts=items):
            return [_evaluate(item, values) for item in items]
        case ast.Tuple(elts=items):
            return tuple(_evaluate(item, values) for item in items)
        case ast.Dict(keys=keys, values=items):
            return {
                _evaluate(key, values): _evaluate(item, values)
                for key, item in zip(keys, items, strict=True)
                if key is not None
            }
        case ast.Call(func=ast.Name(id=name), args=arguments):
            return FUNCTIONS[name](*(_evaluate(argument, values) for argument in arguments))
    raise ExpressionError(f"cannot evaluate {ast.unparse(node)!r}")  # unreachable after _check


def _binary(op: type[ast.operator], left: Any, right: Any) -> Any:
    if op is ast.Mult:
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                _bounded(len(sequence) * max(times, 0))
    elif op is ast.Add and isinstance(left, str | list | tuple):
        _bounded(len(left) + len(right) if isinstance(right, str | list | tuple) else 0)
    elif op is ast.Mod and isinstance(left, str):
        raise ExpressionError("'%' formatting of strings is not allowed")
    return _BINARY[op](left, right)


def _bounded(size: int) -> None:
    if size > MAX_BUILT_SIZE:
        raise ExpressionError(
            f"the expression would build a value of {size:,} items, over {MAX_BUILT_SIZE:,}"
        )
