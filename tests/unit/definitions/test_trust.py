"""The allow-list for DSL definitions written by others: refused before anything is imported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from flowstore import DefinitionError, Workflow

HOSTILE = """\
name: hostile
inputs: {command: str}
nodes:
  - name: shell
    call: os:system
    inputs: [command]
  - name: evaluate
    call: builtins:eval
    inputs: {source: command}
  - name: planted
    call: planted_module:run
    fallback: {call: "os.path:exists"}
    inputs: [command]
"""


def test_import_paths_outside_the_allowed_modules_are_refused_with_their_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hostile.yaml"
    path.write_text(HOSTILE)
    with pytest.raises(DefinitionError) as caught:
        Workflow.load(path, allow=["myapp.nodes"])
    assert [str(problem) for problem in caught.value.problems] == [
        f"{path}:5:5, workflow 'hostile', node 'shell', field 'call': os:system is outside "
        "the modules this definition may import (allowed: myapp.nodes)",
        f"{path}:8:5, workflow 'hostile', node 'evaluate', field 'call': builtins:eval is "
        "outside the modules this definition may import (allowed: myapp.nodes)",
        f"{path}:11:5, workflow 'hostile', node 'planted', field 'call': planted_module:run "
        "is outside the modules this definition may import (allowed: myapp.nodes)",
        f"{path}:12:16, workflow 'hostile', node 'planted', field 'fallback.call': "
        "os.path:exists is outside the modules this definition may import (allowed: "
        "myapp.nodes)",
    ]


def test_a_refused_module_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "planted_module.py").write_text("def run(command):\n    return command\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    path = tmp_path / "hostile.yaml"
    path.write_text(HOSTILE)
    with pytest.raises(DefinitionError):
        Workflow.load(path, allow=["tests"]).compile()
    assert "planted_module" not in sys.modules


def test_allowed_modules_and_their_submodules_load() -> None:
    flow = Workflow.load(
        {
            "name": "ok",
            "nodes": [{"name": "a", "call": "tests.unit.definitions.shapes:classify"}],
        },
        allow=["tests.unit"],
    )
    assert flow.spec.nodes[0].call == "tests.unit.definitions.shapes:classify"
    with pytest.raises(
        DefinitionError, match=r"tests\.unit\.definitions\.shapes:classify is outside"
    ):
        Workflow.load(flow.spec.model_dump(exclude_defaults=True), allow=["tests.uni"])
