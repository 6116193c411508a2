"""`flowstore db` drives the migrations from the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from flowstore.store.migrate import head_revision


def flowstore(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstore", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_db_upgrade_current_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    before = flowstore("db", "current", "--url", url, cwd=tmp_path)
    assert before.returncode == 0 and "base (no flowstore schema) (behind: head is" in before.stdout

    upgraded = flowstore("db", "upgrade", "--url", url, cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip().endswith(f"is at revision {head_revision()}")
    assert "(up to date)" in flowstore("db", "current", "--url", url, cwd=tmp_path).stdout

    downgraded = flowstore("db", "downgrade", "base", "--url", url, cwd=tmp_path)
    assert downgraded.returncode == 0 and "is at revision base" in downgraded.stdout


def test_the_url_comes_from_the_environment(tmp_path: Path) -> None:
    env = {"FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}"}
    assert flowstore("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    assert (tmp_path / "env.db").exists()


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    failed = flowstore("db", "current", "--url", "postgresql://x@127.0.0.1:1/db", cwd=tmp_path)
    assert failed.returncode == 1
    assert failed.stderr.startswith("flowstore: error: reading the schema revision:")
    assert "Traceback" not in failed.stderr
