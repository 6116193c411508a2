"""The inspector's pages and actions, as one Starlette application.

Every page reads through a `Client` (the CLI's reads: runs, node executions, errors, the
log, waits), and every value read is rendered by Jinja2 with autoescaping on: a node output
holding `<script>` is shown as that text.

Actions (cancel a run, send it a signal, hand a failed run back to the workers, fork it)
exist only when the inspector is started with an action token; without one it is read-only
and every action answers 403. With one, a person signs in once by giving the token
(`/sign-in`), which sets an HttpOnly, SameSite=Strict cookie. An action then needs three
things: that cookie, a form field `csrf` (an HMAC of the token that only the inspector's own
pages carry), and, when the browser says where the request comes from (`Origin`,
`Sec-Fetch-Site`), this server. A page of another site can neither read the field nor make
the browser send the cookie with its request.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flowstore.errors import FlowstoreError, RunNotFound
from flowstore.store.engine import StoreSettings
from flowstore.store.records import RunId, RunQuery, RunStatus, Transition, TransitionKind

__all__ = ["create_app"]

PAGE_SIZE = 50
_COOKIE = "flowstore_ui_token"


def create_app(settings: StoreSettings, *, token: str | None = None) -> Starlette:
    """The inspector on the database of `settings`; read-only unless `token` is given."""
    from flowstore.runtime.client import Client

    templates = Environment(
        loader=PackageLoader("flowstore.ui", "templates"), autoescape=True, trim_blocks=True
    )
    templates.filters["pretty"] = _pretty
    templates.filters["when"] = _when
    templates.filters["took"] = _took
    templates.filters["percent"] = _percent
    templates.filters["ms"] = _ms
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with Client(settings=settings) as client:
            state["client"] = client
            yield

    def render(request: Request, name: str, status_code: int = 200, **values: Any) -> Response:
        signed_in = token is not None and _signed_in(request, token)
        page = templates.get_template(name).render(
            actions=signed_in,
            can_sign_in=token is not None and not signed_in,
            csrf=_csrf(token) if signed_in and token is not None else "",
            **values,
        )
        return HTMLResponse(page, status_code=status_code)

    async def runs_page(request: Request) -> Response:
        client = state["client"]
        try:
            query, filters = _runs_query(request)
        except ValueError as error:
            return render(request, "error.html", 400, message=str(error))
        runs = await client.store.list_runs(query)
        more = len(runs) > PAGE_SIZE
        runs = runs[:PAGE_SIZE]
        following = None
        if more:
            last = runs[-1]
            following = {**filters, "after": f"{last.created_at.isoformat()}|{last.id}"}
        # The first page follows new runs; later ones stay as they are.
        live = (
            None
            if "after" in request.query_params
            else "/?" + urlencode({**filters, "part": "table"})
        )
        return render(
            request,
            "runs_table.html" if request.query_params.get("part") == "table" else "runs.html",
            runs=runs,
            filters=filters,
            statuses=[status.value for status in RunStatus],
            following=following,
            live=live,
        )

    async def run_page(request: Request) -> Response:
        client = state["client"]
        given = request.path_params["run_id"]
        try:
            run_id = await client.expand_run_id(given)
        except FlowstoreError as error:
            return render(request, "error.html", 404, message=str(error))
        if run_id != given:
            return RedirectResponse(f"/runs/{run_id}", status_code=303)
        log = await client.store.read_transitions(RunId(run_id))
        values = await _run_values(client, run_id)
        last_seq = log[-1].seq if log else 0
        return render(request, "run.html", log=_log_rows(log), last_seq=last_seq, **values)

    async def run_live(request: Request) -> Response:
        """The part of a run's page that changes as it runs."""
        client = state["client"]
        try:
            values = await _run_values(client, request.path_params["run_id"])
        except FlowstoreError as error:
            return render(request, "error.html", 404, message=str(error))
        return render(request, "run_live.html", **values)

    async def run_events(request: Request) -> Response:
        """The run's events after `after` (or the browser's Last-Event-ID), as server-sent
        events, live until the run ends; then an `end` event."""
        from flowstore.events import stream_event_adapter

        client = state["client"]
        run_id = request.path_params["run_id"]
        resumed = request.headers.get("last-event-id") or request.query_params.get("after", "0")
        try:
            after = int(resumed)
            await client.get_run(run_id)
        except ValueError:
            return render(request, "error.html", 400, message=f"after {resumed!r}: not a number")
        except FlowstoreError as error:
            return render(request, "error.html", 404, message=str(error))

        async def stream() -> AsyncIterator[str]:
            async for event in client.events(run_id, after=after):
                data = stream_event_adapter.dump_json(event).decode()
                yield f"id: {event.seq}\ndata: {data}\n\n"
            yield "event: end\ndata: {}\n\n"

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def stats_page(request: Request) -> Response:
        """Per workflow and node: durations, success and cache-hit rates, errors by type,
        model calls with their tokens and cost, from the statistics views."""
        store = state["client"].store
        workflow = request.query_params.get("workflow", "").strip() or None
        nodes = await store.node_stats(workflow=workflow)
        slowest = max((node.p95_ms or 0.0 for node in nodes), default=0.0)
        return render(
            request,
            "stats.html",
            workflow=workflow or "",
            runs=await store.run_stats(workflow=workflow),
            nodes=nodes,
            scale=slowest or 1.0,
            errors=await store.error_stats(workflow=workflow),
            models=await store.llm_usage(workflow=workflow),
        )

    async def workers_page(request: Request) -> Response:
        """Live workers (`flowstore workers`): how long since each beat, the runs each holds."""
        from flowstore.runtime.worker_list import list_workers

        return render(request, "workers.html", workers=await list_workers(state["client"].store))

    async def act(request: Request, perform: Action) -> Response:
        """Run an action the request may run (`_refused`), then show the page it names."""
        refused = await _refused(request, token)
        if refused is not None:
            return refused
        form = await request.form()
        try:
            shown = await perform(state["client"], request.path_params["run_id"], form)
        except _BadForm as bad:
            return render(request, "error.html", 400, message=str(bad))
        except FlowstoreError as error:
            return render(request, "error.html", _status_of(error), message=str(error))
        return RedirectResponse(shown, status_code=303)

    async def cancel(request: Request) -> Response:
        async def perform(client: Any, run_id: str, form: FormData) -> str:
            await client.cancel(run_id)
            return f"/runs/{run_id}"

        return await act(request, perform)

    async def resume(request: Request) -> Response:
        """A failed run, handed back to the workers (`Client.resume`)."""

        async def perform(client: Any, run_id: str, form: FormData) -> str:
            await client.resume(run_id)
            return f"/runs/{run_id}"

        return await act(request, perform)

    async def fork(request: Request) -> Response:
        """A new run from this one, from a node, queued for the workers (`Client.fork`)."""

        async def perform(client: Any, run_id: str, form: FormData) -> str:
            inputs = _json_field(form, "inputs", "the fork's inputs")
            if inputs is not None and not isinstance(inputs, dict):
                raise _BadForm("the fork's inputs are a JSON object: input names and values")
            node = str(form.get("node", "")).strip()
            return f"/runs/{await client.fork(run_id, node, inputs=inputs)}"

        return await act(request, perform)

    async def signal(request: Request) -> Response:
        async def perform(client: Any, run_id: str, form: FormData) -> str:
            name = str(form.get("name", "")).strip()
            payload = _json_field(form, "payload", "the signal's payload")
            if not name:
                raise _BadForm("the signal needs a name")
            await client.signal(run_id, name, payload)
            return f"/runs/{run_id}"

        return await act(request, perform)

    async def sign_in_page(request: Request) -> Response:
        if token is None:
            return render(request, "error.html", 404, message="this inspector is read-only")
        return render(request, "sign_in.html")

    async def sign_in(request: Request) -> Response:
        if token is None or not _same_site(request):
            return _forbidden()
        form = await request.form()
        if not hmac.compare_digest(str(form.get("token", "")).encode(), token.encode()):
            return render(request, "sign_in.html", 403, wrong=True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(_COOKIE, token, httponly=True, samesite="strict")
        return response

    static = StaticFiles(packages=[("flowstore.ui", "static")])
    return Starlette(
        routes=[
            Route("/", runs_page),
            Route("/runs/{run_id}", run_page),
            Route("/runs/{run_id}/live", run_live),
            Route("/runs/{run_id}/events", run_events),
            Route("/runs/{run_id}/cancel", cancel, methods=["POST"]),
            Route("/runs/{run_id}/signal", signal, methods=["POST"]),
            Route("/runs/{run_id}/resume", resume, methods=["POST"]),
            Route("/runs/{run_id}/fork", fork, methods=["POST"]),
            Route("/stats", stats_page),
            Route("/workers", workers_page),
            Route("/sign-in", sign_in_page),
            Route("/sign-in", sign_in, methods=["POST"]),
            Mount("/static", static, name="static"),
        ],
        lifespan=lifespan,
    )


async def _run_values(client: Any, run_id: str) -> dict[str, Any]:
    """What a run's page shows of the run, read now."""
    from flowstore.ui.graph import draw
    from flowstore.ui.timeline import timeline

    run = await client.get_run(run_id)
    store = client.store
    waits = await store.read_waits(RunId(run_id))
    executions = await store.read_node_executions(RunId(run_id))
    errors = await store.list_errors(run_id=RunId(run_id), limit=1000)
    lookups = await store.list_metrics(run_id=RunId(run_id), name="cache_lookup")
    latest = sorted(executions, key=lambda execution: execution.updated_seq)
    statuses = {execution.node: execution.status.value for execution in latest}
    return {
        "run": run,
        "ended": run.status.is_terminal,
        "drawing": draw(await store.get_graph_spec(run.graph_hash) or {}, statuses),
        "executions": executions,
        "bars": timeline(run.started_at, run.finished_at, executions, errors, lookups, waits),
        "errors": errors,
        "model_calls": await store.list_llm_calls(run_id=RunId(run_id)),
        "waits": [wait for wait in waits if wait.outcome is None],
    }


def _log_rows(log: list[Transition]) -> list[dict[str, Any]]:
    """A run's log as the page shows it: a node's tokens in a row, one after another, as a
    text (the stream of a model's reply reads as the reply)."""
    rows: list[dict[str, Any]] = []
    for transition in log:
        tokens = transition.kind is TransitionKind.EVENT and transition.name == "token"
        last = rows[-1] if rows else None
        if (
            tokens
            and last
            and last["tokens"]
            and (last["node"], last["key"])
            == (
                transition.node,
                transition.key,
            )
        ):
            last["text"] += str(transition.payload)
            continue
        rows.append(
            {
                "seq": transition.seq,
                "at": transition.created_at,
                "kind": transition.kind.value,
                "node": transition.node,
                "key": transition.key,
                "what": transition.status or transition.name or "",
                "payload": transition.payload,
                "tokens": tokens,
                "text": str(transition.payload) if tokens else "",
            }
        )
    return rows


def _runs_query(request: Request) -> tuple[RunQuery, dict[str, str]]:
    """The runs page's query from its URL, and the filters it was given (to link pages)."""
    given = {key: value.strip() for key, value in request.query_params.items() if value.strip()}
    filters: dict[str, str] = {
        key: given[key] for key in ("workflow", "status", "id", "since", "until") if key in given
    }
    statuses = None
    if "status" in filters:
        try:
            statuses = frozenset({RunStatus(filters["status"])})
        except ValueError:
            known = ", ".join(status.value for status in RunStatus)
            raise ValueError(f"status {filters['status']!r} is not one of {known}") from None
    since = _time(filters["since"], "since") if "since" in filters else None
    until = _time(filters["until"], "until") if "until" in filters else None
    after = None
    if "after" in given:
        created, _, run_id = given["after"].partition("|")
        after = (_time(created, "after"), RunId(run_id))
    query = RunQuery(
        workflow=filters.get("workflow"),
        statuses=statuses,
        created_after=since,
        created_before=until,
        id_prefix=filters.get("id"),
        listed_after=after,
        limit=PAGE_SIZE + 1,
    )
    return query, filters


def _time(text: str, field: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field} {text!r} is not a date or time (2026-11-28T09:30)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


Action = Callable[[Any, str, FormData], Awaitable[str]]
"""An action on a run: given the client, the run's id and the form, it acts and returns the
page to show next."""


class _BadForm(ValueError):
    """A form an action cannot take: what is wrong with it."""


def _json_field(form: FormData, name: str, what: str) -> Any:
    """A form field that holds JSON, decoded (None when empty)."""
    text = str(form.get(name, "")).strip()
    try:
        return json.loads(text) if text else None
    except json.JSONDecodeError as error:
        raise _BadForm(f"{what} is not JSON: {error.msg} (line {error.lineno})") from None


def _csrf(token: str) -> str:
    """The value the inspector's own forms carry: an HMAC of the token, which a page of
    another site cannot read."""
    return hmac.new(token.encode(), b"flowstore ui actions", hashlib.sha256).hexdigest()


def _signed_in(request: Request, token: str) -> bool:
    return hmac.compare_digest(request.cookies.get(_COOKIE, "").encode(), token.encode())


def _same_site(request: Request) -> bool:
    """Whether the browser, when it says, says the request comes from this server."""
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin == f"{request.url.scheme}://{request.url.netloc}"


async def _refused(request: Request, token: str | None) -> Response | None:
    """The answer to an action that must not run (None: it may)."""
    if token is None or not _signed_in(request, token) or not _same_site(request):
        return _forbidden()
    form = await request.form()
    if not hmac.compare_digest(str(form.get("csrf", "")).encode(), _csrf(token).encode()):
        return _forbidden()
    return None


def _forbidden() -> Response:
    return HTMLResponse(
        "actions need the inspector's action token: start it with --token, and sign in",
        status_code=403,
    )


def _status_of(error: FlowstoreError) -> int:
    return 404 if isinstance(error, RunNotFound) else 409


def _pretty(value: Any) -> str:
    """A stored value as indented JSON text (escaped where it is shown)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.0f}%"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def _took(started: datetime | None, finished: datetime | None) -> str:
    if started is None or finished is None:
        return ""
    milliseconds = (finished - started).total_seconds() * 1000
    return f"{milliseconds:.0f} ms" if milliseconds < 10_000 else f"{milliseconds / 1000:.1f} s"
