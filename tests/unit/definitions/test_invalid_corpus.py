"""A corpus of invalid definitions: each is refused with the right message and location.

`invalid/expected.json` says, per file, a substring of the problem's message (`error`), its
`line:column` (`at`), and where known its `node` and `field`; `problems` counts the problems
of a file that has several, all reported together.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flowstore.definition.builder import Workflow
from flowstore.errors import DefinitionError, Problem

CORPUS = Path(__file__).parent / "invalid"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "expected.json").read_text())


def test_the_corpus_is_large_enough_and_complete() -> None:
    files = {path.name for path in CORPUS.iterdir() if path.suffix in (".yaml", ".json")}
    files.discard("expected.json")
    assert len(files) >= 40
    assert files == set(EXPECTED)


def _refusal(path: Path) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        Workflow.load(path).compile()
    return caught.value


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_an_invalid_definition_is_refused_with_its_location(name: str) -> None:
    expected = EXPECTED[name]
    error = _refusal(CORPUS / name)

    matching = [p for p in error.problems if str(expected["error"]) in p.message]
    assert matching, f"no problem says {expected['error']!r}: {error}"
    problem: Problem = matching[0]
    assert problem.file == str(CORPUS / name)
    if "at" in expected:
        assert f"{problem.line}:{problem.column}" == expected["at"], str(problem)
    if "node" in expected:
        assert problem.node == expected["node"], str(problem)
    if "field" in expected:
        assert problem.field == expected["field"], str(problem)
    assert len(error.problems) == expected.get("problems", 1), str(error)
    assert str(problem) in str(error)
