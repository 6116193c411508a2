"""The wheel carries its migrations: `flowstore db upgrade` works after a plain pip install."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_installed_wheel_upgrades_a_fresh_database(tmp_path: Path) -> None:
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--wheel-dir",
        tmp_path,
        ROOT,
        cwd=tmp_path,
    )
    [wheel] = tmp_path.glob("flowstore-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)

    location = _run(
        venv / "bin" / "python",
        "-c",
        "from flowstore.store.migrate import migrations_location; print(migrations_location())",
        cwd=tmp_path,
    )
    assert location.strip().startswith(str(venv)), "migrations must come from the wheel"

    database = tmp_path / "x.db"
    url = f"sqlite+aiosqlite:///{database}"
    upgraded = _run(venv / "bin" / "flowstore", "db", "upgrade", "--url", url, cwd=tmp_path)
    assert "is at revision" in upgraded
    current = _run(venv / "bin" / "flowstore", "db", "current", "--url", url, cwd=tmp_path)
    assert "(up to date)" in current

    with sqlite3.connect(database) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert {"flowstore_runs", "flowstore_transitions", "flowstore_alembic_version"} <= tables
