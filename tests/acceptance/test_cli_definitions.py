"""`flowstore validate` and `flowstore graph` on definition files and Python workflows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ROOT / "tests" / "unit" / "definitions"


def flowstore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstore", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validate_reports_the_hash_of_a_valid_file() -> None:
    done = flowstore("validate", str(SHAPES / "yaml" / "router.yaml"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: workflow 'router' version '1', 4 nodes, hash ")


def test_validate_lists_every_problem_with_its_place() -> None:
    done = flowstore("validate", str(SHAPES / "invalid" / "many_problems.yaml"))
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines[0] == "flowstore: error: 3 problems in the definition:"
    assert "many_problems.yaml:7:14, workflow 'broken', node 'classify'" in lines[1]
    assert "Traceback" not in done.stderr


def test_graph_draws_a_python_workflow_and_a_file_with_its_subworkflow() -> None:
    mermaid = flowstore("graph", "tests.unit.definitions.test_export:PARENT")
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart TD\n")

    dot = flowstore(
        "graph",
        str(SHAPES / "yaml" / "subworkflow.yaml"),
        "--with",
        str(SHAPES / "yaml" / "chain.yaml"),
        "--format",
        "dot",
    )
    assert dot.returncode == 0, dot.stderr
    assert '"child" [label="child\\nruns workflow chain"];' in dot.stdout
    missing = flowstore("graph", str(SHAPES / "yaml" / "subworkflow.yaml"))
    assert missing.returncode == 1
    assert "unknown workflow 'chain'" in missing.stderr


def test_a_reference_to_something_else_is_refused() -> None:
    done = flowstore("validate", "tests.unit.definitions.shapes:classify")
    assert done.returncode == 1
    assert "is a function, not a Workflow" in done.stderr
    assert flowstore("validate", "no-such-file.yaml").stderr.endswith("no such file\n")


def test_validate_refuses_a_document_too_deep_or_a_number_too_long() -> None:
    for name, place in [("nested_500_deep.yaml", ":5:72"), ("integer_5000_digits.json", ":1:87")]:
        done = flowstore("validate", str(SHAPES / "invalid" / name))
        assert done.returncode == 1
        assert f"{name}{place}" in done.stderr
        assert "Traceback" not in done.stderr
