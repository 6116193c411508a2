"""benchmarks/compare.py runs every engine it finds, and says which it left out."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_comparison_prints_its_tables_with_the_engines_it_has(tmp_path: Path) -> None:
    table = tmp_path / "table.md"
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "compare.py"),
            "--quick",
            "--repeat",
            "1",
            "--output",
            str(table),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert table.read_text() == done.stdout
    lines = done.stdout.splitlines()
    assert "| W1 | 50 |  | " in done.stdout and "| W3 | 50 | 120 ms | " in done.stdout
    assert any(line.startswith("| flowstore `sync` | ") for line in lines)
    assert "- disk per step of W1, flowstore `sync`: " in done.stdout
    peers = {"LangGraph (default)": "langgraph", "DBOS": "dbos"}
    for name, module in peers.items():
        if importlib.util.find_spec(module) is None:
            assert name in next(line for line in lines if line.startswith("Not installed"))
        else:
            assert any(line.startswith(f"| {name} | ") for line in lines)
