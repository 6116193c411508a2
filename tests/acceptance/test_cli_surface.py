"""The command line as a user meets it: one line per mistake, --json, short ids, --version."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def flowstore(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstore", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}


def test_version() -> None:
    from flowstore import __version__

    done = flowstore("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"flowstore {__version__}")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["runs", "list", "--status", "bogus"],
            2,
            "argument --status: invalid choice: 'bogus'",
        ),
        (
            ["runs", "list", "--url", "not a url"],
            1,
            "flowstore: error: 'not a url' is not a database URL",
        ),
        (
            ["db", "downgrade", "zzz"],
            1,
            "flowstore: error: downgrade to 'zzz': Can't locate revision identified by 'zzz'",
        ),
        (["runs", "show", "nope"], 1, "no run has an id that starts with 'nope'"),
        (["run", "examples.triage:flow", "--input", "[1"], 1, "--input is not JSON"),
        (["validate", "missing.yaml"], 1, "missing.yaml: no such file"),
    ],
)
def test_every_mistake_is_one_clear_line_and_a_non_zero_exit(
    env: dict[str, str], args: list[str], code: int, message: str
) -> None:
    flowstore("db", "upgrade", env=env)
    done = flowstore(*args, env=env)
    assert done.returncode == code
    assert "Traceback" not in done.stderr
    assert message in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.startswith("flowstore")]) == 1


def test_help_shows_the_defaults() -> None:
    done = flowstore("runs", "list", "--help")
    assert "at most this many runs (default: 20)" in " ".join(done.stdout.split())
    worker = " ".join(flowstore("worker", "--help").stdout.split())
    assert "runs executed at once (default: 4)" in worker
    assert "(default 30); a second signal stops at once --keep-runs" in worker  # said once


def test_piping_into_head_stops_quietly(env: dict[str, str]) -> None:
    script = (
        "import asyncio\n"
        "from flowstore import Engine\n"
        "from tests.support.surface_flow import chat\n"
        "async def main():\n"
        "    async with Engine(workers=0) as engine:\n"
        "        for n in range(1500):\n"
        "            await engine.submit(chat, {'text': 'x'})\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, **env}, check=True)
    done = subprocess.run(
        f"{sys.executable} -m flowstore runs list --limit 1500 | head -2",
        shell=True,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    assert len(done.stdout.splitlines()) == 2
    assert done.stderr == ""


def test_listings_have_json_and_runs_answer_to_a_short_id(env: dict[str, str]) -> None:
    done = flowstore(
        "run", "tests.support.surface_flow:broken", "--input", '{"reason": "boom"}', env=env
    )
    assert done.returncode == 1
    [run] = json.loads(flowstore("runs", "list", "--json", env=env).stdout)
    assert (run["workflow"], run["status"], run["waiting"]) == ("broken", "failed", None)
    short = run["id"][:6]
    shown = json.loads(flowstore("runs", "show", short, "--json", env=env).stdout)
    assert shown["run"]["id"] == run["id"]
    assert [(n["node"], n["status"]) for n in shown["nodes"]] == [("explode", "failed")]
    [error] = json.loads(flowstore("errors", "--run", short, "--json", env=env).stdout)
    assert (error["node"], error["outcome"], error["message"]) == ("explode", "failed_run", "boom")
    stats = json.loads(flowstore("stats", "--json", env=env).stdout)
    assert [(r["workflow"], r["runs"], r["failed"]) for r in stats["runs"]] == [("broken", 1, 1)]
    assert json.loads(flowstore("workers", "--json", env=env).stdout) == []
    tail = flowstore("runs", "tail", short, "--no-follow", "--json", env=env)
    assert json.loads(tail.stdout.splitlines()[-1])["status"] == "failed"


def test_an_ambiguous_short_id_names_the_runs_it_could_be(env: dict[str, str]) -> None:
    for _ in range(40):  # forty ids: two of them surely share a first hex digit
        flowstore("run", "tests.support.surface_flow:chat", "--input", '{"text": "a"}', env=env)
    ids = [
        run["id"]
        for run in json.loads(flowstore("runs", "list", "--limit", "50", "--json", env=env).stdout)
    ]
    first = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    done = flowstore("runs", "show", first, env=env)
    assert done.returncode == 1
    assert f"run id {first!r} is ambiguous: it starts " in done.stderr


def test_run_shows_the_tokens_as_they_stream(env: dict[str, str]) -> None:
    done = flowstore(
        "run", "tests.support.surface_flow:chat", "--input", '{"text": "one two three"}', env=env
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "one two three "
    assert "one two three \n" in done.stderr


def test_resume_under_a_changed_definition_is_offered_on_the_command_line(
    env: dict[str, str],
) -> None:
    failed = flowstore(
        "run", "tests.support.surface_flow:broken", "--input", '{"reason": "boom"}', env=env
    )
    run_id = failed.stderr.splitlines()[0].split()[1]
    refused = flowstore("resume", run_id[:8], "tests.support.surface_flow:changed", env=env)
    assert refused.returncode == 1
    assert "flowstore resume --allow-changed-definition" in refused.stderr
    assert "node 'explode' removed; node 'explode_less' added" in refused.stderr
    resumed = flowstore(
        "resume",
        run_id[:8],
        "tests.support.surface_flow:changed",
        "--allow-changed-definition",
        env=env,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == "boom"


def test_reading_commands_register_no_worker(env: dict[str, str]) -> None:
    flowstore("run", "tests.support.surface_flow:chat", "--input", '{"text": "a"}', env=env)
    for args in (["runs", "list"], ["stats"], ["errors"], ["workers"], ["memory", "threads"]):
        assert flowstore(*args, env=env).returncode == 0
    script = (
        "import asyncio\nfrom flowstore import Client\n"
        "async def main():\n"
        "    async with Client() as client:\n"
        "        print(len(await client.store.list_workers()))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert done.stdout.strip() == "0"


def test_debug_mode_prints_without_logging_configured(env: dict[str, str]) -> None:
    script = (
        "import asyncio\nfrom flowstore import Engine\n"
        "from tests.support.surface_flow import chat\n"
        "async def main():\n"
        "    async with Engine(workers=0, debug=True) as engine:\n"
        "        await engine.run(chat, {'text': 'hello'})\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "flowstore.run.chat: node reply starts, attempt 1, inputs" in done.stderr


@pytest.fixture
def read_only_folder(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A folder (`source`) and the same folder where nothing may be written, even by root:
    a read-only bind mount for root, permissions for anyone else."""
    source, seen = tmp_path / "source", tmp_path / "read-only"
    source.mkdir()
    seen.mkdir()
    if os.geteuid() != 0:
        yield source, source
        return
    subprocess.run(["mount", "--bind", str(source), str(seen)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(seen)], check=True)
        yield source, seen
    finally:
        subprocess.run(["umount", str(seen)], check=True)


def test_reading_commands_read_a_database_they_may_not_write(
    read_only_folder: tuple[Path, Path],
) -> None:
    source, seen = read_only_folder
    env = {"FLOWSTORE_DATABASE_URL": f"sqlite:///{source / 'cli.db'}"}
    flowstore("run", "tests.support.surface_flow:chat", "--input", '{"text": "a"}', env=env)
    if seen == source:  # not root: the permissions say it
        (source / "cli.db").chmod(0o444)
        source.chmod(0o555)
    read_only = {"FLOWSTORE_DATABASE_URL": f"sqlite:///{seen / 'cli.db'}"}
    for args in (["runs", "list"], ["stats"], ["errors"], ["workers"], ["memory", "threads"]):
        done = flowstore(*args, env=read_only)
        assert done.returncode == 0, (args, done.stderr)
    listed = json.loads(flowstore("runs", "list", "--json", env=read_only).stdout)
    assert [(run["workflow"], run["status"]) for run in listed] == [("chat", "succeeded")]
    shown = flowstore("runs", "show", listed[0]["id"][:8], env=read_only)
    assert shown.returncode == 0 and "reply" in shown.stdout


def test_a_yaml_definition_imports_modules_from_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "myapp_nodes.py").write_text(
        "async def shout(text: str) -> str:\n    return text.upper()\n"
    )
    (tmp_path / "shout.yaml").write_text(
        "name: shout\ninputs: {text: str}\nnodes:\n  - name: shout\n    call: myapp_nodes:shout\n"
        "    inputs: [text]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["FLOWSTORE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'shout.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "flowstore", "run", "shout.yaml", "--input", '{"text": "hi"}'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "HI"


def test_allow_refuses_imports_outside_the_given_modules(tmp_path: Path) -> None:
    (tmp_path / "hostile.yaml").write_text(
        "name: hostile\ninputs: {command: str}\nnodes:\n  - name: shell\n    call: os:system\n"
        "    inputs: [command]\n"
    )
    done = flowstore("validate", str(tmp_path / "hostile.yaml"), "--allow", "myapp")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"flowstore: error: {tmp_path / 'hostile.yaml'}:5:5, workflow 'hostile', node 'shell', "
        "field 'call': os:system is outside the modules this definition may import "
        "(allowed: myapp)"
    )
    allowed = flowstore("validate", str(tmp_path / "hostile.yaml"), "--allow", "os")
    assert allowed.returncode == 0, allowed.stderr
