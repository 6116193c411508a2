"""The web inspector in a real headless Chromium (driven by Playwright): `flowstore ui` serves
a database that an engine in this process writes, as a person would use it.

A screenshot of each page is saved under `build/screenshots/` (or `$FLOWSTORE_SCREENSHOTS`).
Without a Chromium (`chromium` on the PATH, or `$FLOWSTORE_CHROMIUM`) these tests skip,
unless `$FLOWSTORE_REQUIRE_BROWSER` is set (CI sets it): then they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowstore import Engine, NodeContext, RunStatus, Workflow
from tests.support.statuses import until_status

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "browser-test-token"
SHOTS = Path(os.environ.get("FLOWSTORE_SCREENSHOTS") or ROOT / "build" / "screenshots")

pytestmark = pytest.mark.slow


def _chromium() -> str:
    found = os.environ.get("FLOWSTORE_CHROMIUM") or shutil.which("chromium")
    found = found or shutil.which("chromium-browser")
    missing = []
    if found is None:
        missing.append("no Chromium (install Debian's `chromium`, or set $FLOWSTORE_CHROMIUM)")
    try:
        import playwright  # noqa: F401
        import starlette  # noqa: F401
    except ImportError as error:
        missing.append(f"{error.name} is not installed (the `ui` and `dev` extras)")
    if missing:
        reason = "; ".join(missing)
        if os.environ.get("FLOWSTORE_REQUIRE_BROWSER"):
            pytest.fail(f"the browser tests must run here, but: {reason}")
        pytest.skip(reason)
    assert found is not None
    return found


release = asyncio.Event()

slow = Workflow("slow", output="done")


@slow.node
async def think(text: str, ctx: NodeContext) -> str:
    await ctx.emit_token("thinking ")
    await release.wait()
    for piece in ("about ", "<it>"):
        await ctx.emit_token(piece)
    return text.upper()


@slow.node
async def done(think: str) -> str:
    return f"{think}!"


broken = Workflow("broken")


@broken.node
async def explode(text: str) -> str:
    raise ValueError(f"cannot handle {text}")


review = Workflow("review")


@review.node
async def approve(text: str, ctx: NodeContext) -> str:
    decision = await ctx.wait_for_signal("approve")
    return f"{text}: {decision['verdict']}"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'flowstore.db'}"


@pytest.fixture
async def engine(url: str) -> AsyncIterator[Engine]:
    release.clear()
    async with Engine(url, workflows=[slow, broken, review], poll_seconds=0.05) as engine:
        yield engine
    release.set()


@pytest.fixture
def inspector(engine: Engine, url: str) -> Iterator[str]:
    """`flowstore ui` on a free port, with an action token; its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "FLOWSTORE_UI_TOKEN": TOKEN}
    command = [sys.executable, "-m", "flowstore", "ui", "--url", url, "--port", str(port)]
    server = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(400):
            try:
                with urllib.request.urlopen(base + "/", timeout=5):
                    break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError(f"flowstore ui stopped: {server.stderr.read()}") from None
                import time

                time.sleep(0.05)
        yield base
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.fixture
def chromium() -> str:
    """The browser to drive (the test skips or fails without one); screenshots' folder made."""
    executable = _chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    return executable


@pytest.fixture
async def page(chromium: str, inspector: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    executable = chromium
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        context = await browser.new_context(base_url=inspector)
        page = await context.new_page()
        yield page
        await browser.close()


async def test_the_runs_page_lists_the_runs(engine: Engine, page: Any) -> None:
    failed = await engine.run(broken, {"text": "x"})
    await page.goto("/")
    await page.wait_for_selector(f'a[href="/runs/{failed.id}"]')
    assert await page.text_content("h1") == "Runs"
    await page.screenshot(path=SHOTS / "runs.png", full_page=True)
    # A run created after the page was opened appears on it without a reload.
    await page.evaluate("window.stillTheSamePage = true")
    later = await engine.run(broken, {"text": "y"})
    await page.wait_for_selector(f'a[href="/runs/{later.id}"]', timeout=10_000)
    assert await page.evaluate("window.stillTheSamePage") is True


async def test_a_running_node_turns_succeeded_without_a_reload(engine: Engine, page: Any) -> None:
    run_id = await engine.submit(slow, {"text": "hello"})
    await until_status(engine, run_id, RunStatus.RUNNING)
    await page.goto(f"/runs/{run_id}")
    await page.wait_for_selector("#node-think .status.running")
    await page.wait_for_selector("#graph-think.running")  # the graph's box, too
    assert await page.locator("#graph-done").get_attribute("class") == "node pending"
    await page.screenshot(path=SHOTS / "run-running.png", full_page=True)
    await page.evaluate("window.stillTheSamePage = true")

    release.set()
    await page.wait_for_selector("#node-think .status.succeeded", timeout=15_000)
    await page.wait_for_selector("#run-status.succeeded", timeout=15_000)
    await page.wait_for_selector("#graph-done.succeeded")
    assert await page.evaluate("window.stillTheSamePage") is True
    assert '"HELLO!"' in (await page.text_content("#run-output") or "")
    # The log grew under the eyes of the reader, too, the node's tokens as one text.
    assert "succeeded" in (await page.text_content("#log") or "")
    await page.wait_for_function(
        "document.querySelector('#log pre.tokens').textContent === 'thinking about <it>'"
    )
    assert await page.locator("#log pre.tokens").count() == 1
    assert await page.locator("it").count() == 0
    await page.screenshot(path=SHOTS / "run-succeeded.png", full_page=True)


async def test_a_failed_runs_traceback_can_be_read(engine: Engine, page: Any) -> None:
    failed = await engine.run(broken, {"text": "<b>bold</b>"})
    await page.goto(f"/runs/{failed.id}")
    traceback = await page.text_content("pre.traceback")
    assert traceback is not None
    assert "Traceback (most recent call last)" in traceback
    assert "ValueError: cannot handle <b>bold</b>" in traceback  # as text, not markup
    assert await page.locator("b").count() == 0
    await page.screenshot(path=SHOTS / "run-failed.png", full_page=True)


async def test_a_person_approves_a_waiting_run_and_sees_it_finish(
    engine: Engine, page: Any
) -> None:
    run_id = await engine.submit(review, {"text": "post"})
    await until_status(engine, run_id, RunStatus.WAITING)
    await page.goto(f"/runs/{run_id}")
    assert await page.locator("form.signal").count() == 0  # not signed in: nothing to press
    await page.click("text=sign in for actions")
    await page.fill('input[name="token"]', TOKEN)
    await page.click('button:has-text("sign in")')
    await page.goto(f"/runs/{run_id}")
    await page.fill('form.signal textarea[name="payload"]', '{"verdict": "approved"}')
    await page.screenshot(path=SHOTS / "run-waiting.png", full_page=True)
    await page.click('form.signal button:has-text("send approve")')
    await page.wait_for_selector("#run-status.succeeded", timeout=15_000)
    run = await engine.get_run(run_id)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "post: approved")
    await page.screenshot(path=SHOTS / "run-approved.png", full_page=True)
