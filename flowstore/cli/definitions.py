"""`flowstore validate` and `flowstore graph`: check and draw a workflow definition."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_allow_option", "add_commands", "load_workflow"]


def add_commands(commands: Any) -> None:
    """Register `validate` and `graph`."""
    source_help = (
        "a YAML or JSON file, or a Python workflow as module:attribute or file.py:attribute"
    )
    with_help = "another workflow this one runs as a subworkflow (repeatable)"

    validate = commands.add_parser("validate", help="check a workflow definition")
    validate.add_argument("source", help=source_help)
    validate.add_argument("--with", dest="children", action="append", default=[], help=with_help)
    add_allow_option(validate)
    validate.set_defaults(handler=_validate)

    graph = commands.add_parser("graph", help="draw a workflow as Mermaid or Graphviz DOT")
    graph.add_argument("source", help=source_help)
    graph.add_argument("--format", choices=["mermaid", "dot"], default="mermaid")
    graph.add_argument("--with", dest="children", action="append", default=[], help=with_help)
    add_allow_option(graph)
    graph.set_defaults(handler=_graph)

    schema = commands.add_parser(
        "schema", help="print the JSON Schema of YAML/JSON workflows, for editors and CI"
    )
    schema.add_argument("--output", metavar="FILE", help="write it to FILE instead")
    schema.set_defaults(handler=_schema)


def add_allow_option(parser: argparse.ArgumentParser) -> None:
    """`--allow MODULE`: the modules a YAML or JSON definition may import (repeatable)."""
    parser.add_argument(
        "--allow",
        metavar="MODULE",
        action="append",
        help="for YAML/JSON definitions written by others: a module (with its submodules) "
        "they may import; any other import path is refused (repeatable; default: any)",
    )


def load_workflow(source: str, allow: Sequence[str] | None = None) -> Any:
    """A `Workflow` from a definition file or a `module:attribute` reference. The working
    directory is importable, as it is for `python -m`: a definition's `call: myapp.nodes:f`
    finds `./myapp`. `allow` limits what a definition file may import."""
    from flowstore.definition.builder import Workflow
    from flowstore.definition.resolution import resolve_call
    from flowstore.errors import DefinitionError, Problem

    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        return Workflow.load(path, allow=allow)
    if ":" not in source:
        raise DefinitionError([Problem("no such file", file=source)])
    location, _, attribute = source.rpartition(":")
    if location.endswith(".py"):  # path/to/module.py:flow, imported as `module` from its folder
        file = Path(location)
        if not file.is_file():
            raise DefinitionError([Problem("no such file", file=location)])
        sys.path.insert(0, str(file.resolve().parent))
        source = f"{file.stem}:{attribute}"
    try:
        found = resolve_call(source)
    except LookupError as error:
        raise DefinitionError([Problem(str(error))]) from None
    if not isinstance(found, Workflow):
        raise DefinitionError([Problem(f"{source} is a {type(found).__name__}, not a Workflow")])
    return found


def add_resources_option(parser: argparse.ArgumentParser) -> None:
    """`--resources MODULE:ATTRIBUTE`, read by `load_resources`."""
    parser.add_argument(
        "--resources",
        metavar="MODULE:ATTRIBUTE",
        help="the shared resources nodes receive: a mapping (or a function returning one)",
    )


def load_resources(source: str | None) -> dict[str, Any]:
    """The shared resources at a `module:attribute` reference: a mapping of name to resource
    (see `Engine(resources=...)`); none without a reference."""
    from flowstore.definition.resolution import resolve_call
    from flowstore.errors import FlowstoreError

    if source is None:
        return {}
    sys.path.insert(0, str(Path.cwd()))
    try:
        found = resolve_call(source)
    except LookupError as error:
        raise FlowstoreError(f"--resources {source}: {error}") from None
    if callable(found):
        found = found()
    if not isinstance(found, Mapping):
        raise FlowstoreError(
            f"--resources {source}: a {type(found).__name__}, not a mapping of resource names"
        )
    return dict(found)


def _compiled(args: argparse.Namespace) -> Any:
    children = [load_workflow(source, args.allow) for source in args.children]
    known = {child.name: child.spec for child in children}
    return load_workflow(args.source, args.allow).compile(workflows=known)


def _validate(args: argparse.Namespace) -> int:
    graph = _compiled(args)
    print(
        f"ok: workflow {graph.name!r} version {graph.spec.version!r}, {len(graph.nodes)} nodes, "
        f"hash {graph.hash[:16]}"
    )
    return 0


def _graph(args: argparse.Namespace) -> int:
    from flowstore.definition.export import to_dot, to_mermaid

    graph = _compiled(args)
    print(to_mermaid(graph) if args.format == "mermaid" else to_dot(graph), end="")
    return 0


def _schema(args: argparse.Namespace) -> int:
    import json

    from flowstore.definition.schema import workflow_schema

    text = json.dumps(workflow_schema(), indent=2) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0
