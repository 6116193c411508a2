"""Reading DSL definitions: YAML (with the `yaml` extra) and JSON files, or plain dicts.

Files are parsed into plain data together with the line and column of every value, so each
problem the validator or the compiler finds points at its place in the file. YAML is read with
PyYAML's safe loader only (no Python tags), duplicate keys are refused, and alias expansion is
bounded, so a hostile file cannot build an enormous document.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Mapping
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, Final

from flowstore.definition.compiler import Locator
from flowstore.errors import DefinitionError, Problem

__all__ = ["MAX_DEPTH", "MAX_DOCUMENT_NODES", "read_definition"]

MAX_DEPTH: Final = 64
"""The deepest a definition document may nest mappings and lists (a workflow needs a few)."""

MAX_DOCUMENT_NODES: Final = 1_000_000
"""The most values a definition document may hold once YAML aliases are expanded."""

MAX_FILE_BYTES: Final = 64 * 1024 * 1024

SpecPath = tuple[str | int, ...]


def read_definition(
    source: str | Path | Mapping[str, Any],
) -> tuple[Any, Locator | None, str | None]:
    """Read a definition: its data, a locator of positions (for files), and the file name.

    Raises:
        DefinitionError: The file is missing, unreadable, too large, or not valid YAML/JSON.
    """
    if isinstance(source, Mapping):
        return dict(source), None, None
    path = Path(source)
    file = str(source)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise DefinitionError(
                [Problem(f"the file is over {MAX_FILE_BYTES // (1024 * 1024)} MB", file=file)]
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DefinitionError([Problem("no such file", file=file)]) from None
    except UnicodeDecodeError as error:
        raise DefinitionError(
            [Problem(f"the file is not UTF-8 text: {error}", file=file)]
        ) from None
    except OSError as error:
        raise DefinitionError(
            [Problem(f"cannot read the file: {error.strerror}", file=file)]
        ) from None
    if path.suffix.lower() == ".json":
        data, positions = _read_json(text, file)
    elif path.suffix.lower() in (".yaml", ".yml"):
        data, positions = _read_yaml(text, file)
    else:
        raise DefinitionError(
            [Problem("unknown definition format: name the file *.yaml, *.yml or *.json", file=file)]
        )
    return data, positions.get, file


# ------------------------------------------------------------------------------ JSON


def _read_json(text: str, file: str) -> tuple[Any, dict[SpecPath, tuple[int, int]]]:
    positions: dict[SpecPath, tuple[int, int]] = {}
    lines = _LineIndex(text)
    try:
        end, data = _json_value(text, _skip(text, 0), (), positions, lines)
        end = _skip(text, end)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except json.JSONDecodeError as error:
        raise DefinitionError(
            [
                Problem(
                    f"invalid JSON: {error.msg}", file=file, line=error.lineno, column=error.colno
                )
            ]
        ) from None
    except RecursionError:
        raise DefinitionError(
            [Problem("the JSON document is nested too deeply", file=file)]
        ) from None
    return data, positions


_WHITESPACE = frozenset(" \t\n\r")
_DECODER = json.JSONDecoder()


def _skip(text: str, index: int) -> int:
    while index < len(text) and text[index] in _WHITESPACE:
        index += 1
    return index


def _json_value(
    text: str,
    index: int,
    path: SpecPath,
    positions: dict[SpecPath, tuple[int, int]],
    lines: _LineIndex,
) -> tuple[int, Any]:
    positions[path] = lines.position(index)
    if index >= len(text):
        raise json.JSONDecodeError("Expecting value", text, index)
    opener = text[index]
    if opener in "{[" and len(path) >= MAX_DEPTH:
        raise json.JSONDecodeError(f"nested over {MAX_DEPTH} levels deep", text, index)
    if opener == "{":
        result: dict[str, Any] = {}
        index = _skip(text, index + 1)
        if index < len(text) and text[index] == "}":
            return index + 1, result
        while True:
            if index >= len(text) or text[index] != '"':
                raise json.JSONDecodeError(
                    "Expecting property name enclosed in double quotes", text, index
                )
            key_at = index
            key, index = scanstring(text, index + 1)
            if key in result:
                raise json.JSONDecodeError(f"Duplicate key {key!r}", text, key_at)
            index = _skip(text, index)
            if index >= len(text) or text[index] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", text, index)
            index, result[key] = _json_value(
                text, _skip(text, index + 1), (*path, key), positions, lines
            )
            positions[(*path, key)] = lines.position(key_at)
            index = _skip(text, index)
            if index < len(text) and text[index] == ",":
                index = _skip(text, index + 1)
                continue
            if index < len(text) and text[index] == "}":
                return index + 1, result
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
    if opener == "[":
        items: list[Any] = []
        index = _skip(text, index + 1)
        if index < len(text) and text[index] == "]":
            return index + 1, items
        while True:
            index, item = _json_value(text, index, (*path, len(items)), positions, lines)
            items.append(item)
            index = _skip(text, index)
            if index < len(text) and text[index] == ",":
                index = _skip(text, index + 1)
                continue
            if index < len(text) and text[index] == "]":
                return index + 1, items
            raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
    try:
        value, end = _DECODER.raw_decode(text, index)
    except ValueError as error:  # a number too long to convert, say
        if isinstance(error, json.JSONDecodeError):
            raise
        raise json.JSONDecodeError(f"invalid value: {error}", text, index) from None
    return end, value


class _LineIndex:
    """Turns an offset in a text into a 1-based (line, column)."""

    def __init__(self, text: str) -> None:
        self._starts = [0]
        self._starts.extend(i + 1 for i, char in enumerate(text) if char == "\n")

    def position(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


# ------------------------------------------------------------------------------ YAML


def _read_yaml(text: str, file: str) -> tuple[Any, dict[SpecPath, tuple[int, int]]]:
    try:
        import yaml
    except ImportError:
        raise DefinitionError(
            [Problem("reading YAML needs PyYAML: pip install 'flowstore[yaml]'", file=file)]
        ) from None
    try:
        _check_yaml_depth(text, file)  # PyYAML composes recursively: too deep, it crashes
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        raise DefinitionError(
            [
                Problem(
                    f"invalid YAML: {error.problem or error.context}",
                    file=file,
                    line=mark.line + 1 if mark else None,
                    column=mark.column + 1 if mark else None,
                )
            ]
        ) from None
    except yaml.YAMLError as error:
        raise DefinitionError([Problem(f"invalid YAML: {error}", file=file)]) from None
    if root is None:
        raise DefinitionError([Problem("the file is empty", file=file)])
    positions: dict[SpecPath, tuple[int, int]] = {}
    budget = [MAX_DOCUMENT_NODES]
    constructor = yaml.SafeLoader("")
    try:
        data = _yaml_value(root, (), positions, budget, constructor, file)
    except RecursionError:
        raise DefinitionError(
            [Problem("the YAML document is nested too deeply", file=file)]
        ) from None
    return data, positions


def _check_yaml_depth(text: str, file: str) -> None:
    """Refuse a YAML document nested over `MAX_DEPTH` levels, where it goes too deep (read
    as a stream of events, which takes no recursion)."""
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise DefinitionError([_at(f"nested over {MAX_DEPTH} levels deep", event, file)])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _yaml_value(
    node: Any,
    path: SpecPath,
    positions: dict[SpecPath, tuple[int, int]],
    budget: list[int],
    constructor: Any,
    file: str,
) -> Any:
    import yaml

    budget[0] -= 1
    if budget[0] < 0:
        raise DefinitionError(
            [
                Problem(
                    f"the document expands to over {MAX_DOCUMENT_NODES:,} values (aliases?)",
                    file=file,
                )
            ]
        )
    mark = node.start_mark
    positions.setdefault(path, (mark.line + 1, mark.column + 1))
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _yaml_value(key_node, (*path, "<key>"), {}, budget, constructor, file)
            if not isinstance(key, str):
                kind = "null" if key is None else type(key).__name__
                raise DefinitionError([_at(f"a key must be text, not {kind}", key_node, file)])
            if key in result:
                raise DefinitionError([_at(f"duplicate key {key!r}", key_node, file)])
            positions[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            result[key] = _yaml_value(
                value_node, (*path, key), positions, budget, constructor, file
            )
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _yaml_value(item, (*path, index), positions, budget, constructor, file)
            for index, item in enumerate(node.value)
        ]
    try:
        return constructor.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError) as error:  # ValueError: a number too long, say
        raise DefinitionError([_at(f"invalid value: {error}", node, file)]) from None


def _at(message: str, node: Any, file: str) -> Problem:
    mark = node.start_mark
    return Problem(message, file=file, line=mark.line + 1, column=mark.column + 1)
