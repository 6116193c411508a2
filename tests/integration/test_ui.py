"""The web inspector (`flowstore ui`) over HTTP: its pages, that every stored value is shown as
text, and that actions need the action token, the inspector's own form and its own origin."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette", reason="the `ui` extra is not installed")

from flowstore import Cache, Engine, Fallback, NodeContext, Retry, RunStatus, Workflow
from flowstore.store import NewRun, RunId, StoreSettings, TransitionKind
from flowstore.ui import create_app
from tests.support.statuses import until_status

TOKEN = "s3cret-action-token"
HOSTILE = "<script>alert('owned')</script>"

hostile = Workflow("hostile")


@hostile.node
async def shout(text: str) -> str:
    return HOSTILE + text


breaking = Workflow("breaking")


@breaking.node
async def fail(text: str) -> str:
    raise RuntimeError(f"refused {text}")


talker = Workflow("talker")


@talker.node
async def reply(text: str, ctx: NodeContext) -> str:
    for piece in ("Hel", "lo <i>", "there"):
        await ctx.emit_token(piece)
    await ctx.emit("note", {"said": text})
    return "done"


eventful = Workflow("eventful")
flaky_calls: list[int] = []


@eventful.node(retry=Retry(attempts=3, backoff=0))
async def flaky(text: str) -> str:
    flaky_calls.append(1)
    if len(flaky_calls) % 2:
        raise ConnectionError("try again")
    return text


@eventful.node(fallback=Fallback(value="plan b"))
async def risky(flaky: str) -> str:
    raise RuntimeError("down")


@eventful.node(cache=Cache())
async def cached(risky: str) -> str:
    return risky.upper()


approval = Workflow("approval")


@approval.node
async def decide(text: str, ctx: NodeContext) -> str:
    answer = await ctx.wait_for_signal("approve")
    return f"{text}: {answer['verdict']}"


@pytest.fixture
async def runs(migrated_url: str) -> AsyncIterator[tuple[Engine, dict[str, str]]]:
    flows = [hostile, breaking, approval]
    async with Engine(migrated_url, workflows=flows, poll_seconds=0.05) as engine:
        shown = await engine.run(hostile, {"text": HOSTILE})
        # Workflow names are checked when defined; a row written by other means is not.
        named = await engine.store.create_run(NewRun(HOSTILE, "1", "h", {"text": HOSTILE}))
        failed = await engine.run(breaking, {"text": "x"})
        waiting = await engine.submit(approval, {"text": "post"})
        await until_status(engine, waiting, RunStatus.WAITING)
        ids = {"shown": shown.id, "named": named.id, "failed": failed.id, "waiting": waiting}
        yield engine, ids


@pytest.fixture
def url(migrated_url: str) -> str:
    return migrated_url


async def _inspector(url: str, token: str | None) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(StoreSettings(url=url, create=False), token=token)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ui.test") as browser:
            yield browser


@pytest.fixture
async def read_only(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for browser in _inspector(url, None):
        yield browser


@pytest.fixture
async def with_token(url: str) -> AsyncIterator[httpx.AsyncClient]:
    async for browser in _inspector(url, TOKEN):
        yield browser


async def _sign_in(browser: httpx.AsyncClient) -> str:
    """Sign in; return the form value the inspector's pages carry for actions."""
    signed = await browser.post("/sign-in", data={"token": TOKEN})
    assert signed.status_code == 303
    page = (await browser.get("/")).text
    assert "actions on" in page
    return page


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found is not None, "no action form on the page"
    return found.group(1)


async def test_the_runs_page_lists_filters_and_pages_the_runs(
    runs: tuple[Engine, dict[str, str]], read_only: httpx.AsyncClient
) -> None:
    _, ids = runs
    page = (await read_only.get("/")).text
    for run_id in ids.values():
        assert f'href="/runs/{run_id}"' in page
    failed_only = (await read_only.get("/", params={"status": "failed"})).text
    assert ids["failed"] in failed_only and ids["shown"] not in failed_only
    by_workflow = (await read_only.get("/", params={"workflow": "approval"})).text
    assert ids["waiting"] in by_workflow and ids["failed"] not in by_workflow
    by_prefix = (await read_only.get("/", params={"id": ids["shown"][:8]})).text
    assert ids["shown"] in by_prefix and ids["waiting"] not in by_prefix

    shown = await engine_run_created(runs, "shown")
    window = {"since": shown.isoformat(), "until": (shown + timedelta(microseconds=1)).isoformat()}
    in_window = (await read_only.get("/", params=window)).text
    assert ids["shown"] in in_window and ids["waiting"] not in in_window

    bad = await read_only.get("/", params={"status": "done"})
    assert bad.status_code == 400 and "status &#39;done&#39; is not one of" in bad.text
    bad = await read_only.get("/", params={"since": "yesterday"})
    assert bad.status_code == 400 and "since &#39;yesterday&#39; is not a date" in bad.text


async def engine_run_created(runs: tuple[Engine, dict[str, str]], name: str) -> datetime:
    engine, ids = runs
    return (await engine.get_run(ids[name])).created_at


async def test_pages_of_runs_follow_one_another_with_none_missing_or_twice(
    url: str, read_only: httpx.AsyncClient
) -> None:
    from flowstore.ui import app as ui_app

    async with Engine(url, workflows=[breaking]) as engine:
        made = {(await engine.run(breaking, {"text": str(i)})).id for i in range(7)}
    seen: list[str] = []
    ui_app.PAGE_SIZE, size = 3, ui_app.PAGE_SIZE
    try:
        path = "/"
        while path:
            page = (await read_only.get(path)).text
            seen += re.findall(r'href="/runs/([0-9a-f-]{36})"', page)
            older = re.search(r'class="next" href="([^"]+)"', page)
            path = older.group(1).replace("&amp;", "&") if older else ""
    finally:
        ui_app.PAGE_SIZE = size
    assert len(seen) == len(set(seen)) == 7 and set(seen) == made


async def test_a_run_page_shows_nodes_errors_tracebacks_and_the_log(
    runs: tuple[Engine, dict[str, str]], read_only: httpx.AsyncClient
) -> None:
    _, ids = runs
    failed = (await read_only.get(f"/runs/{ids['failed']}")).text
    assert 'class="status failed"' in failed
    assert "RuntimeError" in failed and "refused x" in failed
    assert "Traceback (most recent call last)" in failed and "raise RuntimeError" in failed
    assert "<td>fail</td>" in failed

    assert '<g class="node failed" id="graph-fail">' in failed

    waiting = (await read_only.get(f"/runs/{ids['waiting']}")).text
    assert "signal <code>approve</code> (node decide" in waiting
    assert '<g class="node waiting" id="graph-decide">' in waiting
    assert "<form" not in waiting.split("<main>")[1]  # read-only: no action form

    # A unique start of an id is enough: the page of the whole id answers.
    short = await read_only.get(f"/runs/{ids['failed'][:10]}")
    assert short.status_code == 303 and short.headers["location"] == f"/runs/{ids['failed']}"
    missing = await read_only.get("/runs/ffffffff-0000")
    assert missing.status_code == 404 and "ffffffff-0000" in missing.text


async def test_hostile_values_from_the_database_are_shown_as_text(
    runs: tuple[Engine, dict[str, str]], read_only: httpx.AsyncClient
) -> None:
    _, ids = runs
    for path in ("/", f"/runs/{ids['shown']}", f"/runs/{ids['named']}"):
        page = (await read_only.get(path)).text
        assert "<script>" not in page, path
        assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page, path
    # The search box echoes what it was given, escaped too.
    page = (await read_only.get("/", params={"workflow": '"><script>x()</script>'})).text
    assert "<script>" not in page and "&#34;&gt;&lt;script&gt;" in page


async def test_actions_are_refused_without_the_token_its_form_or_its_origin(
    runs: tuple[Engine, dict[str, str]], read_only: httpx.AsyncClient, with_token: httpx.AsyncClient
) -> None:
    engine, ids = runs
    target = f"/runs/{ids['waiting']}/cancel"
    # Read-only: no action at all, not even with a guessed form.
    assert (await read_only.post(target, data={"csrf": "x"})).status_code == 403
    assert (await read_only.get("/sign-in")).status_code == 404
    # With a token, but not signed in.
    assert (await with_token.post(target, data={"csrf": "x"})).status_code == 403
    wrong = await with_token.post("/sign-in", data={"token": "guess"})
    assert wrong.status_code == 403 and "not the inspector" in wrong.text
    await _sign_in(with_token)
    csrf = _csrf((await with_token.get(f"/runs/{ids['waiting']}")).text)
    # Signed in, but without the form's value, or from another site's page.
    assert (await with_token.post(target, data={})).status_code == 403
    assert (await with_token.post(target, data={"csrf": "0" * 64})).status_code == 403
    cross = {"origin": "http://evil.test", "sec-fetch-site": "cross-site"}
    assert (await with_token.post(target, data={"csrf": csrf}, headers=cross)).status_code == 403
    other = {"sec-fetch-site": "same-site"}
    assert (await with_token.post(target, data={"csrf": csrf}, headers=other)).status_code == 403
    # None of those touched the run.
    assert (await engine.get_run(ids["waiting"])).status is RunStatus.WAITING


async def test_a_signed_in_person_approves_a_waiting_run_and_it_finishes(
    runs: tuple[Engine, dict[str, str]], with_token: httpx.AsyncClient
) -> None:
    engine, ids = runs
    await _sign_in(with_token)
    page = (await with_token.get(f"/runs/{ids['waiting']}")).text
    assert 'action="/runs/' + ids["waiting"] + '/signal"' in page
    bad = await with_token.post(
        f"/runs/{ids['waiting']}/signal",
        data={"csrf": _csrf(page), "name": "approve", "payload": "{verdict: yes"},
        headers={"origin": "http://ui.test"},
    )
    assert bad.status_code == 400 and "not JSON" in bad.text
    sent = await with_token.post(
        f"/runs/{ids['waiting']}/signal",
        data={"csrf": _csrf(page), "name": "approve", "payload": '{"verdict": "yes"}'},
        headers={"origin": "http://ui.test"},
    )
    assert sent.status_code == 303
    run = await asyncio.wait_for(engine.wait(ids["waiting"]), 10)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, "post: yes")
    shown = (await with_token.get(f"/runs/{ids['waiting']}")).text
    assert 'class="status succeeded" id="run-status"' in shown


async def test_a_signed_in_person_cancels_a_run(url: str, with_token: httpx.AsyncClient) -> None:
    async with Engine(url, workflows=[approval], poll_seconds=0.05) as engine:
        run_id = await engine.submit(approval, {"text": "post"})
        await until_status(engine, run_id, RunStatus.WAITING)
        await _sign_in(with_token)
        page = (await with_token.get(f"/runs/{run_id}")).text
        done = await with_token.post(f"/runs/{run_id}/cancel", data={"csrf": _csrf(page)})
        assert done.status_code == 303
        run: Any = await asyncio.wait_for(engine.wait(run_id), 10)
        assert run.status is RunStatus.CANCELLED
        again = await with_token.post(f"/runs/{run_id}/cancel", data={"csrf": _csrf(page)})
        assert again.status_code == 303  # cancelling an ended run changes nothing


async def test_statistics_show_durations_rates_and_errors_by_type(
    runs: tuple[Engine, dict[str, str]], read_only: httpx.AsyncClient
) -> None:
    page = (await read_only.get("/stats")).text
    runs_table, nodes_table, errors_table = (_rows(section) for section in page.split("<h2>")[1:4])
    workflows = {row[0]: row for row in runs_table}
    assert workflows["breaking"][1:4] == ["1", "0", "1"]  # runs, succeeded, failed
    assert workflows["breaking"][5].startswith("0%")
    [shout_row] = [row for row in nodes_table if row[1] == "shout"]
    assert shout_row[2:4] == ["1", "100%"]  # executions, success
    assert shout_row[6].endswith(" ms") and "<rect" in shout_row[8]
    [error] = [row for row in errors_table if row[2] == "builtins.RuntimeError"]
    assert error[:2] == ["breaking", "fail"] and error[3:5] == ["failed_run", "1"]
    one = (await read_only.get("/stats", params={"workflow": "hostile"})).text
    assert "RuntimeError" not in one and "shout" in one


def _rows(html: str) -> list[list[str]]:
    """The cells of each body row of the first table in `html`, tags out of the text."""
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr(?: [^>]*)?>(.*?)</tr>", body, flags=re.S)
    return [
        [cell if "<svg" in cell else re.sub("<[^>]+>", "", cell).strip() for cell in cells]
        for cells in (re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S) for row in rows)
    ]


async def test_workers_show_their_heartbeat_and_the_runs_they_hold(
    url: str, read_only: httpx.AsyncClient
) -> None:
    async with Engine(url, workflows=[approval], poll_seconds=0.05) as engine:
        page = (await read_only.get("/workers")).text
        assert f"<code>{engine.worker_id}</code>" in page
        assert re.search(r"\d+\.\d s ago", page)


async def test_a_nodes_tokens_read_as_one_text_in_the_log(
    url: str, read_only: httpx.AsyncClient
) -> None:
    async with Engine(url, workflows=[talker]) as engine:
        run = await engine.run(talker, {"text": "hi"})
    page = (await read_only.get(f"/runs/{run.id}")).text
    assert page.count('<pre class="tokens">') == 1
    assert '<tr data-tokens="reply|">' in page
    assert '<pre class="tokens">Hello &lt;i&gt;there</pre>' in page
    assert "<td>note</td>" in page  # other events keep a row each


async def test_the_timeline_marks_retries_fallbacks_cache_hits_and_waits(
    runs: tuple[Engine, dict[str, str]], read_only: httpx.AsyncClient
) -> None:
    engine, ids = runs
    await engine.run(eventful, {"text": "x"})
    second = await engine.run(eventful, {"text": "x"})  # its `cached` is a cache hit
    page = (await read_only.get(f"/runs/{second.id}")).text
    timeline = page.split("<h2>Timeline</h2>")[1].split("<h2>")[0]
    bars = {row[0].split()[0]: row for row in _rows(timeline)}
    assert "retried 1x" in bars["flaky"][2] and "attempt 2" in bars["flaky"][0]
    assert "fallback" in bars["risky"][2]
    assert "cache hit" in bars["cached"][2]
    assert re.search(r'class="span succeeded" style="margin-left: [\d.]+%; width: [\d.]+%"', page)
    waiting = (await read_only.get(f"/runs/{ids['waiting']}")).text
    assert "waits for signal approve" in waiting.split("<h2>Timeline</h2>")[1]


async def test_a_signed_in_person_hands_a_failed_run_back_to_the_workers(
    runs: tuple[Engine, dict[str, str]], with_token: httpx.AsyncClient
) -> None:
    engine, ids = runs
    await _sign_in(with_token)
    page = (await with_token.get(f"/runs/{ids['failed']}")).text
    assert f'action="/runs/{ids["failed"]}/resume"' in page
    assert (await with_token.post(f"/runs/{ids['failed']}/resume", data={})).status_code == 403
    done = await with_token.post(f"/runs/{ids['failed']}/resume", data={"csrf": _csrf(page)})
    assert done.status_code == 303
    # A worker took it up again, and it failed again (the node always fails).
    run = await asyncio.wait_for(engine.wait(ids["failed"]), 10)
    assert run.status is RunStatus.FAILED
    log = await engine.store.read_transitions(RunId(ids["failed"]))
    assert [t.status for t in log if t.kind is TransitionKind.RUN][-3:] == [
        "queued",
        "running",
        "failed",
    ]
    again = await with_token.post(f"/runs/{ids['shown']}/resume", data={"csrf": _csrf(page)})
    assert again.status_code == 409 and "only a failed run" in again.text


async def test_a_signed_in_person_forks_a_run_from_a_node_onto_the_workers(
    runs: tuple[Engine, dict[str, str]], with_token: httpx.AsyncClient
) -> None:
    engine, ids = runs
    await _sign_in(with_token)
    page = (await with_token.get(f"/runs/{ids['shown']}")).text
    assert '<option value="shout">shout</option>' in page
    form = {"csrf": _csrf(page), "node": "shout", "inputs": '{"text": "again"}'}
    forked = await with_token.post(f"/runs/{ids['shown']}/fork", data=form)
    assert forked.status_code == 303
    new_id = forked.headers["location"].rsplit("/", 1)[1]
    run = await asyncio.wait_for(engine.wait(new_id), 10)
    assert (run.status, run.output) == (RunStatus.SUCCEEDED, HOSTILE + "again")
    bad = await with_token.post(
        f"/runs/{ids['shown']}/fork", data={**form, "inputs": "[1]", "node": "shout"}
    )
    assert bad.status_code == 400 and "a JSON object" in bad.text
    unknown = await with_token.post(f"/runs/{ids['shown']}/fork", data={**form, "node": "x"})
    assert unknown.status_code == 409 and "has no node" in unknown.text
    assert (await with_token.post(f"/runs/{ids['shown']}/fork", data={})).status_code == 403


async def test_a_run_page_and_the_statistics_show_the_model_calls(
    url: str, read_only: httpx.AsyncClient
) -> None:
    from flowstore import LlmConfig, ModelPrice
    from flowstore.llm.testing import FakeChatServer, Fault

    async with FakeChatServer() as server:
        flow = Workflow("asks", inputs={"question": "str"}, output="answer")
        config = LlmConfig(
            model="fake-1",
            base_url=server.base_url,
            api_key_env=None,
            prompt="{question}",
            prices={"fake-1": ModelPrice(prompt=1.0, completion=2.0)},
        )
        flow.llm("answer", config, inputs=["question"], retry=Retry(attempts=2, backoff=0))
        server.faults.append(Fault(status=503))
        async with Engine(url, workflows=[flow]) as engine:
            run = await engine.run(flow, {"question": "hi <b>"})
    assert run.status == RunStatus.SUCCEEDED

    page = (await read_only.get(f"/runs/{run.id}")).text
    calls = page.split("<h2>Model calls</h2>", 1)[1].split("<tbody>", 1)[1]
    rows = re.findall(r"<tr>(.*?)</tr>", calls.split("</tbody>", 1)[0], flags=re.S)
    assert len(rows) == 2
    assert ">failed<" in rows[0] and "HTTP 503" in rows[0]
    # 1 prompt token ("hi <b>") at 1.0 and 4 completion tokens at 2.0 per million
    assert ">ok<" in rows[1] and "5 (1 + 4)" in rows[1] and "0.000009" in rows[1]
    stats = (await read_only.get("/stats")).text
    usage = stats.split("<h2>Model calls</h2>", 1)[1]
    assert "<td>asks</td><td>answer</td><td>fake-1</td>" in usage
    assert "<td>2</td><td>1</td><td>0</td>" in usage
