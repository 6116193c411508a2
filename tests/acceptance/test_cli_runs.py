"""`flowstore run`, `runs list`, `runs show` and `resume`, as a user types them."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from examples.agent import think
from flowstore.llm.testing import FakeChatServer

ROOT = Path(__file__).resolve().parents[2]


def flowstore(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flowstore", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


def test_the_example_runs_and_is_listed_and_shown(tmp_path: Path) -> None:
    env = {"FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    done = flowstore(
        "run", "examples.triage:flow", "--input", '{"ticket": "checkout page is down"}', env=env
    )
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    assert (output["priority"], output["paged"]) == ("urgent", True)
    assert output["reply"].startswith("We are on it: our on-call engineers are looking at checkout")
    progress = done.stderr.splitlines()
    run_id = progress[0].split()[1]
    assert progress[0] == f"run {run_id} of 'triage' in {env['FLOWSTORE_DATABASE_URL']}"
    assert sorted(line.split()[1] for line in progress[1:]) == sorted(
        ["classify", "extract", "draft", "page_oncall", "summary"]
    )

    calm = flowstore("run", "examples.triage:flow", "--input", '{"ticket": "typo"}', env=env)
    assert "  skipped   page_oncall" in calm.stderr
    listed = flowstore("runs", "list", "--workflow", "triage", env=env)
    assert listed.returncode == 0
    assert [line.split()[2] for line in listed.stdout.splitlines()[1:]] == ["succeeded"] * 2
    assert run_id in listed.stdout
    shown = flowstore("runs", "show", run_id, env=env)
    assert shown.returncode == 0
    assert f"run {run_id}: workflow 'triage' version '1', succeeded" in shown.stdout
    assert "page_oncall             succeeded  1" in shown.stdout


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    env = {"FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    done = flowstore("run", "examples.triage:flow", "--input", '{"ticket": 3}', env=env)
    assert done.returncode == 1
    assert "ticket: Input should be a valid string" in done.stderr
    assert "Traceback" not in done.stderr
    assert flowstore("run", "examples.triage:flow", "--input", "[", env=env).returncode == 1


def test_a_killed_run_is_resumed_from_the_command_line(tmp_path: Path) -> None:
    side_effects = tmp_path / "effects.log"
    env = {
        "FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FLOWSTORE_TEST_SIDE_EFFECTS": str(side_effects),
        "FLOWSTORE_TEST_SLOW_SECONDS": "30",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flowstore",
            "run",
            "tests.support.slow_flow:flow",
            "--input",
            '{"word": "hi"}',
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while "slow" not in (side_effects.read_text() if side_effects.exists() else ""):
        assert time.monotonic() < deadline, "the run never reached its slow node"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate()
    run_id = stderr.splitlines()[0].split()[1]

    resumed = flowstore(
        "resume",
        run_id,
        "tests.support.slow_flow:flow",
        env={**env, "FLOWSTORE_TEST_SLOW_SECONDS": "0"},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == "HI!"
    assert side_effects.read_text().splitlines() == ["fast", "slow", "slow"]
    assert "  recovered slow" in resumed.stderr


def test_a_workflow_is_named_by_its_file_too(tmp_path: Path) -> None:
    env = {"FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    done = flowstore("run", "examples/triage.py:flow", "--input", '{"ticket": "typo"}', env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["priority"] == "normal"
    missing = flowstore("run", "examples/nope.py:flow", env=env)
    assert missing.returncode == 1
    assert "examples/nope.py: no such file" in missing.stderr


def test_retries_are_shown_as_they_happen_and_listed_by_flowstore_errors(tmp_path: Path) -> None:
    env = {
        "FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FLOWSTORE_TEST_SIDE_EFFECTS": str(tmp_path / "attempts.log"),
        "FLOWSTORE_TEST_BACKOFF": "0",
    }
    done = flowstore("run", "tests.support.retry_flow:flow", "--input", '{"text": "a"}', env=env)
    assert done.returncode == 0, done.stderr
    assert "  retrying  flaky (attempt 1: ConnectionError: attempt 1 refused)" in done.stderr
    run_id = done.stderr.splitlines()[0].split()[1]

    listed = flowstore("errors", "--run", run_id, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = listed.stdout.splitlines()
    assert rows[0].split() == ["time", "run", "node", "attempt", "outcome", "error"]
    assert [row.split()[3:7] for row in rows[1:]] == [
        ["flaky", "1", "retried", "ConnectionError:"],
        ["flaky", "2", "retried", "ConnectionError:"],
    ]
    assert len(flowstore("errors", "--since", "1h", env=env).stdout.splitlines()) == 3
    assert len(flowstore("errors", "--since", "2099-01-01", env=env).stdout.splitlines()) == 1
    bad = flowstore("errors", "--since", "yesterday", env=env)
    assert bad.returncode == 1
    assert "--since 'yesterday': give an ISO 8601 time" in bad.stderr


def test_a_cache_entry_written_by_one_process_is_hit_by_another(tmp_path: Path) -> None:
    side_effects = tmp_path / "calls.log"
    env = {
        "FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FLOWSTORE_TEST_SIDE_EFFECTS": str(side_effects),
    }
    args = ("run", "tests.support.cache_flow:flow", "--input", '{"text": "to be cached"}')
    first = flowstore(*args, env=env)
    second = flowstore(*args, env=env)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert json.loads(first.stdout) == json.loads(second.stdout) == [2.0, 2.0, 6.0]
    assert side_effects.read_text().splitlines() == ["to be cached"]
    assert "  cache hit embed" in second.stderr

    cleared = flowstore("cache", "clear", "--node", "embed", env=env)
    assert (cleared.returncode, cleared.stdout) == (0, "removed 1 cached output\n")
    assert flowstore(*args, env=env).returncode == 0
    assert side_effects.read_text().splitlines() == ["to be cached"] * 2
    assert flowstore("cache", "clear", "--expired", env=env).stdout == "removed 0 cached outputs\n"


def test_flowstore_stats_renders_the_views(tmp_path: Path) -> None:
    env = {
        "FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FLOWSTORE_TEST_SIDE_EFFECTS": str(tmp_path / "calls.log"),
        "FLOWSTORE_TEST_BACKOFF": "0",
    }
    for _ in range(2):
        args = ("run", "tests.support.cache_flow:flow", "--input", '{"text": "a b"}')
        assert flowstore(*args, env=env).returncode == 0
    retried = ("run", "tests.support.retry_flow:flow", "--input", '{"text": "x"}')
    assert flowstore(*retried, env=env).returncode == 0
    shown = flowstore("stats", env=env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split()[:5] == ["workflow", "runs", "ok", "failed", "success"]
    runs = {line.split()[0]: line.split()[1:5] for line in lines[1:3]}
    assert runs == {"costly": ["2", "2", "0", "100%"], "retrying": ["1", "1", "0", "100%"]}
    nodes = {line.split()[1]: line.split() for line in lines[5:]}
    assert nodes["embed"][2:4] == ["2", "100%"] and nodes["embed"][-1] == "50%"
    assert nodes["flaky"][-2:] == ["2", "-"]  # two retries, no cache
    only = flowstore("stats", "--workflow", "costly", env=env).stdout
    assert "retrying" not in only and "costly" in only


def test_debug_mode_logs_every_node_and_show_debug_tells_everything(tmp_path: Path) -> None:
    env = {
        "FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FLOWSTORE_TEST_SIDE_EFFECTS": str(tmp_path / "attempts.log"),
        "FLOWSTORE_TEST_BACKOFF": "0",
    }
    args = ("run", "tests.support.retry_flow:flow", "--input", '{"text": "dbg"}', "--debug")
    done = flowstore(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert 'flowstore.run.retrying: node flaky starts, attempt 1, inputs {"text": "dbg"}' in (
        done.stderr
    )
    assert (
        "node flaky ended in" in done.stderr and 'after 3 attempt(s): output "DBG"' in done.stderr
    )
    run_id = done.stderr.splitlines()[0].split()[1]

    plain = flowstore("runs", "show", run_id, env=env).stdout
    assert "Traceback" not in plain and "== flaky" not in plain
    shown = flowstore("runs", "show", run_id, "--debug", env=env)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "== flaky: succeeded, attempt 3" in text
    assert '"text": "dbg"' in text and '"DBG"' in text
    assert [line.split()[1] for line in text.splitlines() if line.startswith("  attempt ")] == [
        "1:",
        "2:",
        "3:",
    ]
    assert (
        "-- builtins.ConnectionError in node 'flaky' attempt 1 (retried): attempt 1 refused" in text
    )
    assert "Traceback (most recent call last)" in text
    log = [line.split() for line in text.splitlines() if line[:5].strip().isdigit()]
    assert [row[1] for row in log][:3] == ["run", "node", "event"]


def test_the_command_line_gives_nodes_their_shared_resources(tmp_path: Path) -> None:
    env = {"FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    args = ("run", "tests.support.resource_flow:flow", "--input", '{"name": "Ana"}')
    given = flowstore(*args, "--resources", "tests.support.resource_flow:resources", env=env)
    assert given.returncode == 0, given.stderr
    assert json.loads(given.stdout) == "hello, Ana"
    missing = flowstore(*args, env=env)
    assert missing.returncode == 1
    assert "needs the resource 'greeter', which this engine does not provide" in missing.stderr
    wrong = flowstore(*args, "--resources", "tests.support.resource_flow:flow", env=env)
    assert wrong.returncode == 1
    assert "a Workflow, not a mapping of resource names" in wrong.stderr


async def test_the_agent_conversation_and_its_stream_from_the_command_line(
    tmp_path: Path,
) -> None:
    async with FakeChatServer(think) as server:
        env = {
            "FLOWSTORE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
            "FLOWSTORE_AGENT_LLM_URL": server.base_url,
        }
        asked = json.dumps({"conversation": "ana", "question": "What time is it in Lima?"})
        done = await asyncio.to_thread(
            flowstore, "run", "examples.agent:flow", "--input", asked, env=env
        )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "It is 08:05 in Lima at the moment."
    run_id = done.stderr.splitlines()[0].split()[1]

    tail = flowstore("runs", "tail", run_id, env=env)
    assert tail.returncode == 0, tail.stderr
    lines = tail.stdout.splitlines()
    assert lines[0] == "[1] run running"
    assert lines[3].startswith('[4] event model tool_call: {"id": "call_1", "name": "local_time"')
    assert "It is 08:05 in Lima at the moment." in lines
    assert lines[-1].endswith('run succeeded: "It is 08:05 in Lima at the moment."')
    as_json = flowstore("runs", "tail", run_id, "--json", "--after", "5", env=env)
    seqs = [json.loads(line)["seq"] for line in as_json.stdout.splitlines()]
    assert seqs == list(range(6, seqs[-1] + 1))

    shown = flowstore("memory", "show", "ana", env=env)
    assert shown.returncode == 0, shown.stderr
    assert [line.split()[3] for line in shown.stdout.splitlines() if line.startswith("#")] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert '    calls local_time({"city": "Lima"})' in shown.stdout
    assert "    08:05" in shown.stdout
    threads = flowstore("memory", "threads", env=env)
    assert threads.stdout.splitlines()[1].split()[:2] == ["ana", "4"]
    entities = flowstore(
        "memory", "entities", "--where", "last_question=What time is it in Lima?", env=env
    )
    assert entities.returncode == 0, entities.stderr
    [ana] = entities.stdout.splitlines()[1:]
    assert ana.split()[:3] == ["users", "ana", "1"]
    assert ana.endswith('"last_question": "What time is it in Lima?"}')
    none = flowstore("memory", "entities", "--namespace", "none", env=env)
    assert none.returncode == 0 and len(none.stdout.splitlines()) == 1
    bad = flowstore("memory", "entities", "--where", "nokey", env=env)
    assert bad.returncode == 1 and "--where takes KEY=VALUE" in bad.stderr
