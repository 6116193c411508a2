"""What a DSL definition may import: an allow-list for definitions written by others.

A DSL file is code: its `call`, `fallback.call`, `cache.key`, `input_model` and input types
are import paths, and importing a module runs it (`call: os:system` would resolve). An
application that loads definitions it did not write gives the modules they may use
(`Workflow.load(path, allow=["myapp.nodes"])`); every other import path is refused, with
where it is, before anything is imported.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from flowstore.definition.resolution import Locator
from flowstore.definition.spec import WorkflowSpec
from flowstore.errors import DefinitionError, Problem

__all__ = ["check_allowed", "import_paths"]


def import_paths(spec: WorkflowSpec) -> Iterator[tuple[str, tuple[str | int, ...], str | None]]:
    """Every import path a spec names: the path, where it is in the spec, and its node."""
    if spec.input_model is not None:
        yield spec.input_model, ("input_model",), None
    for name, type_name in spec.inputs.items():
        if ":" in type_name:
            yield type_name, ("inputs", name), None
    for name, path in spec.signals.items():
        yield path, ("signals", name), None
    for index, node in enumerate(spec.nodes):
        where: tuple[str | int, ...] = ("nodes", index)
        if node.call is not None:
            yield node.call, (*where, "call"), node.name
        if node.fallback is not None and node.fallback.call is not None:
            yield node.fallback.call, (*where, "fallback", "call"), node.name
        if node.cache is not None and node.cache.key is not None:
            yield node.cache.key, (*where, "cache", "key"), node.name


def allowed(path: str, allow: Sequence[str]) -> bool:
    """Whether the module of `path` is one of `allow` or inside one of them."""
    module = path.partition(":")[0]
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allow)


def check_allowed(
    spec: WorkflowSpec,
    allow: Sequence[str],
    *,
    locate: Locator | None = None,
    file: str | None = None,
) -> None:
    """Refuse every import path of `spec` outside the modules of `allow`.

    Raises:
        DefinitionError: Each refused path, with its file, line, node and field.
    """
    problems = []
    shown = ", ".join(allow) or "none"
    for path, where, node in import_paths(spec):
        if allowed(path, allow):
            continue
        position = locate(where) if locate is not None else None
        problems.append(
            Problem(
                f"{path} is outside the modules this definition may import (allowed: {shown})",
                workflow=spec.name,
                node=node,
                field=".".join(str(part) for part in where[2:] or where),
                file=file,
                line=position[0] if position else None,
                column=position[1] if position else None,
            )
        )
    if problems:
        raise DefinitionError(problems)
