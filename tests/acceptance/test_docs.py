"""Every snippet and command of the README and of `docs/` runs, as a reader would run it.

Each page runs in a fresh directory with its own SQLite database (`FLOWSTORE_DATABASE_URL`),
its blocks in order:

- `python`: a whole program, run in a new interpreter (top-level `await` allowed, as in
  `python -m asyncio`); a block whose first line is `# file: NAME` is saved as NAME instead,
  for the commands after it;
- `yaml`: saved (`# file: NAME`) or, for a workflow, checked with `flowstore validate`;
- `sh`: one command per line, expected to succeed (or to exit N when its comment says
  `# exits N`); `RUN` stands for the newest run's id. `flowstore worker` is
  started, and stopped with SIGTERM once it runs; `flowstore ui` likewise, once it has
  served its runs page (on a free port); benchmarks run with
  `FLOWSTORE_BENCH_SMOKE=1` (the same code, small sizes).

Lines left out, and why, are in `NOT_RUN_HERE`. The SQL blocks run on both backends in
`tests/integration/test_telemetry.py`; mypy --strict checks the Python blocks below.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

NOT_RUN_HERE = {
    "./scripts/test": "the whole suite: CI runs it (.ci/run), and this test is part of it",
    "python3 -m venv .venv && .venv/bin/pip install -e .": (
        "the main job from a fresh clone: test_the_main_job_runs_in_a_fresh_virtualenv"
    ),
    ".venv/bin/pip install -r benchmarks/requirements.txt": (
        "installs LangGraph and DBOS for the comparison; the comparison itself runs here "
        "without them (it says which engines it left out)"
    ),
    "pip install": "installing a package is the reader's setup, not flowstore's behaviour",
    "mkdocs serve": "serves the site until stopped; CI builds it with mkdocs build --strict",
}

_RUNNER = """
import ast, asyncio, sys
source = open(sys.argv[1]).read()
code = compile(source, sys.argv[1], "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
namespace = {"__name__": "__main__"}
result = eval(code, namespace)
if asyncio.iscoroutine(result):
    asyncio.run(result)
"""


@dataclass
class Block:
    page: str
    number: int
    language: str
    text: str

    @property
    def name(self) -> str:
        return f"{self.page} block {self.number} ({self.language})"


def blocks_of(page: Path) -> list[Block]:
    found = re.findall(r"^```(\w+)[^\n]*\n(.*?)^```", page.read_text(), flags=re.S | re.M)
    where = str(page.relative_to(ROOT))
    return [Block(where, n, lang, text) for n, (lang, text) in enumerate(found, 1)]


def _url(workdir: Path) -> str:
    """The page's database: PostgreSQL's for the PostgreSQL guide, else a SQLite file."""
    marker = workdir / ".database-url"
    return marker.read_text() if marker.exists() else f"sqlite:///{workdir / 'flowstore.db'}"


def _env(workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "FLOWSTORE_DATABASE_URL": _url(workdir),
        "PYTHONPATH": os.pathsep.join([str(workdir), str(ROOT)]),
        "FLOWSTORE_BENCH_SMOKE": "1",
    }


def _skipped(command: str) -> bool:
    return any(command.startswith(prefix) for prefix in NOT_RUN_HERE)


def _newest(kind: str, workdir: Path) -> str:
    listing = subprocess.run(
        [sys.executable, "-m", "flowstore", "runs", "list", "--json", "--limit", "1"],
        cwd=workdir,
        env=_env(workdir),
        capture_output=True,
        text=True,
        check=True,
    )
    runs = json.loads(listing.stdout)
    assert runs, f"{kind} stands for the newest run, and there is none"
    return str(runs[0]["id"])


def _run_command(command: str, workdir: Path, where: str, expected: int = 0) -> None:
    if "RUN" in command.split():
        command = shlex.join(
            _newest("RUN", workdir) if word == "RUN" else word for word in shlex.split(command)
        )
    command = command.replace("url=URL", f"url={_url(workdir)}")
    words = shlex.split(command)
    if words[0] == "flowstore":
        words = [sys.executable, "-m", "flowstore", *words[1:]]
    elif words[0] in (".venv/bin/python", "python", "python3"):
        words = [sys.executable, *words[1:]]
    elif words[0] == "alembic":
        words = [sys.executable, "-m", "alembic", *words[1:]]
    # Benchmarks and Alembic run from the checkout, as the pages say; the rest where the
    # page's files are.
    benchmark = len(words) > 1 and words[1].startswith("benchmarks/")
    from_checkout = benchmark or "alembic" in words[:3]
    cwd = ROOT if from_checkout else workdir
    if "worker" in words[3:4] and expected == 0:
        _run_worker(words, workdir, where)
        return
    if "ui" in words[3:4] and expected == 0:
        _run_inspector(words, workdir, where)
        return
    done = subprocess.run(
        words, cwd=cwd, env=_env(workdir), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == expected, (
        f"{where}: `{command}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    )


def _run_worker(words: list[str], workdir: Path, where: str) -> None:
    worker = subprocess.Popen(
        words, cwd=workdir, env=_env(workdir), stderr=subprocess.PIPE, text=True
    )
    assert worker.stderr is not None
    first = worker.stderr.readline()
    assert " running " in first, f"{where}: the worker did not start: {first}"
    worker.send_signal(signal.SIGTERM)
    _, rest = worker.communicate(timeout=60)
    assert worker.returncode == 0, f"{where}: {first}{rest}"


def _run_inspector(words: list[str], workdir: Path, where: str) -> None:
    """Start `flowstore ui` on a free port, read its runs page, stop it with SIGTERM."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if "--port" in words:
        words = words[: words.index("--port")] + words[words.index("--port") + 2 :]
    server = subprocess.Popen(
        [*words, "--port", str(port)], cwd=workdir, env=_env(workdir), stderr=subprocess.PIPE
    )
    try:
        page = None
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as answer:
                    page = answer.read().decode()
                break
            except OSError:
                time.sleep(0.05)
        assert page is not None and "<h1>Runs</h1>" in page, f"{where}: the inspector did not serve"
    finally:
        server.send_signal(signal.SIGTERM)
        _, errors = server.communicate(timeout=60)
    # Its server (uvicorn) stops cleanly, then ends by the signal, so its parent sees why.
    assert server.returncode in (0, -signal.SIGTERM), f"{where}: {errors.decode()}"


def _run_page(page: Path, workdir: Path) -> None:
    # As from a checkout: the examples and the schema where the pages say they are.
    for shared in ("examples", "schema"):
        (workdir / shared).symlink_to(ROOT / shared)
    for block in blocks_of(page):
        first = block.text.splitlines()[0] if block.text.strip() else ""
        saved = re.match(r"#\s*file:\s*(\S+)", first)
        if block.language in ("python", "yaml") and saved:
            (workdir / saved.group(1)).write_text(block.text)
            continue
        if block.language == "python":
            script = workdir / f"block_{block.number}.py"
            script.write_text(block.text)
            done = subprocess.run(
                [sys.executable, "-c", _RUNNER, str(script)],
                cwd=workdir,
                env=_env(workdir),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"{block.name} failed:\n{done.stdout}\n{done.stderr}"
        elif block.language == "yaml" and "nodes:" in block.text:
            path = workdir / f"block_{block.number}.yaml"
            path.write_text(block.text)
            _run_command(f"flowstore validate {path}", workdir, block.name)
        elif block.language == "sh":
            for line, expected in _commands_and_exits(block.text):
                if not _skipped(line):
                    _run_command(line, workdir, block.name, expected)


def _commands_and_exits(text: str) -> list[tuple[str, int]]:
    """The commands of a shell block, one per line, comments left out, each with the exit
    status its comment announces (`# exits 1`), else 0."""
    commands = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exits = re.search(r"#.*\bexits (\d+)", line)
        commands.append((re.sub(r"\s+#\s.*$", "", line), int(exits.group(1)) if exits else 0))
    return commands


def _commands(text: str) -> list[str]:
    return [command for command, _ in _commands_and_exits(text)]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_snippet_and_command_of_the_page_runs(
    page: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if page.name == "postgresql.md":
        url = request.getfixturevalue("postgres_url")
        (tmp_path / ".database-url").write_text(url)
    _run_page(page, tmp_path)


def test_every_command_left_out_is_one_named_here() -> None:
    for page in PAGES:
        for block in blocks_of(page):
            if block.language != "sh":
                continue
            for line in _commands(block.text):
                runnable = line.split()[0] in (
                    "flowstore",
                    ".venv/bin/python",
                    "python",
                    "python3",
                    "alembic",
                    "touch",
                )
                assert runnable or _skipped(line), f"{block.name}: how is `{line}` run?"


def _as_module(source: str) -> str:
    """A block as mypy can check it: top-level `await`, `async with` and `async for` (run
    as `python -m asyncio` runs them) moved into an async function."""
    try:
        compile(source, "<block>", "exec")
    except SyntaxError:
        body = textwrap.indent(source, "    ")
        return f"async def _block() -> None:\n{body}"
    return source


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_python_blocks_pass_mypy_strict_without_plugins(tmp_path: Path) -> None:
    files = []
    for page in PAGES:
        for block in blocks_of(page):
            if block.language != "python":
                continue
            saved = re.match(r"#\s*file:\s*(\S+)", block.text)
            name = saved.group(1) if saved else re.sub(r"\W", "_", block.name) + ".py"
            assert not (tmp_path / name).exists(), f"{block.name}: {name} is saved twice"
            (tmp_path / name).write_text(_as_module(block.text))
            files.append(str(tmp_path / name))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file=",
            "--no-incremental",
            *files,
            str(ROOT / "examples"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "MYPYPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
        timeout=600,
    )
    assert done.returncode == 0, done.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_main_job_runs_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    [main_job] = [
        line
        for block in blocks_of(ROOT / "README.md")
        for line in _commands(block.text)
        if line.startswith("python3 -m venv .venv")
    ]
    assert main_job in readme
    checkout = tmp_path / "checkout"
    # The working tree as it is (what this run of the suite tests), without what a fresh
    # clone would not have.
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "*.db*", "__pycache__", ".*_cache", "site", "*.egg-info"
        ),
    )
    done = subprocess.run(
        main_job,
        shell=True,
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=900,
        env={
            k: v
            for k, v in os.environ.items()
            if k not in ("FLOWSTORE_DATABASE_URL", "VIRTUAL_ENV")
        },
    )
    assert done.returncode == 0, done.stderr
    output = done.stdout[done.stdout.rindex('{\n  "priority"') :]  # after pip's own output
    assert json.loads(output)["priority"] == "urgent"
    assert (checkout / "flowstore.db").exists()


def test_the_generated_reference_pages_are_current() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "generate.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert done.returncode == 0, done.stderr


def test_every_table_the_docs_name_exists() -> None:
    from flowstore.store.schema import VERSION_TABLE, metadata
    from flowstore.store.views import VIEWS

    known = {*metadata.tables, *(view.table.name for view in VIEWS), VERSION_TABLE}
    for page in PAGES:
        for name in re.findall(r"\bflowstore_[a-z_]+\b", page.read_text()):
            assert name in known, f"{page.relative_to(ROOT)} names {name}, which is no table"
