"""The query plans of the queries that must stay fast however many runs a database holds:
the claim (one query per kind of claimable run), the next due waiting run, run listings,
short-id lookups and retention's choice of runs to delete.

`query_plans` asks the database how it would run each (`EXPLAIN QUERY PLAN` on SQLite,
`EXPLAIN` on PostgreSQL) and `reads_every_run` says whether a plan reads the whole runs table;
the tests and `benchmarks/retention.py` check that none does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from flowstore.store.records import RunId, RunQuery, RunStatus, WorkerId
from flowstore.store.repositories import ownership, queues, retention, runs
from flowstore.store.schema import PREFIX

__all__ = ["query_plans", "reads_every_run"]


class _Explain(Executable, ClauseElement):
    """EXPLAIN of a statement, its parameters bound as the statement's own."""

    inherit_cache = False

    def __init__(self, statement: Any) -> None:
        self.statement = statement


@compiles(_Explain, "sqlite")
def _explain_sqlite(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN QUERY PLAN " + compiler.process(element.statement, **kw)


@compiles(_Explain, "postgresql")
def _explain_postgresql(element: _Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN " + compiler.process(element.statement, **kw)


def _hot_queries(dialect: str) -> dict[str, Any]:
    now = datetime.now(UTC)
    hashes = ["0" * 64]
    kinds = ("queued", "queued in a queue", "running", "waiting")
    # A queue with keys at their limit, and another that is full.
    gate = queues.ClaimGate(
        queues=("llm", "full"),
        closed_to_start=frozenset({"full"}),
        closed_to_resume=frozenset({"full"}),
        full_keys={"llm": ("customer-1",)},
    )
    candidates = ownership.claim_candidates(
        now, workflows=None, run_id=None, graph_hashes=hashes, dead=[WorkerId("gone")], gate=gate
    )
    queries: dict[str, Any] = {
        f"claim {kind}": query for kind, query in zip(kinds, candidates, strict=True)
    }
    queries["next due waiting run"] = ownership.next_wake_query(hashes)
    queries["list runs"] = runs.list_runs_query(RunQuery(limit=100), dialect=dialect)
    queries["list waiting runs"] = runs.list_runs_query(
        RunQuery(statuses=frozenset({RunStatus.WAITING}), limit=100), dialect=dialect
    )
    queries["list runs of a workflow"] = runs.list_runs_query(
        RunQuery(workflow="w", limit=100), dialect=dialect
    )
    queries["list the next page of runs"] = runs.list_runs_query(
        RunQuery(listed_after=(now, RunId("0f3a")), limit=51), dialect=dialect
    )
    queries["list runs by the start of their id"] = runs.list_runs_query(
        RunQuery(id_prefix="0f3a", limit=51), dialect=dialect
    )
    queries["find a short id"] = runs.find_run_ids_query("0f3a", limit=10, dialect=dialect)
    queries["queue starts in a window"] = queues.started_since_query("llm", now)
    queries["runs to delete"] = retention.ended_runs_query(
        now, [status for status in RunStatus if status.is_terminal], 500
    )
    return queries


def query_plans(conn: Connection) -> dict[str, str]:
    """Each hot query's plan, as the database gives it (one line per step)."""
    plans = {}
    for name, query in _hot_queries(conn.dialect.name).items():
        result = conn.execute(_Explain(query))
        # The driver's rows: the result thinks it has the query's columns, and would
        # convert the plan's text as them.
        rows = result.cursor.fetchall() if result.cursor is not None else []
        result.close()
        plans[name] = "\n".join(str(row[-1]) for row in rows)
    return plans


def reads_every_run(plan: str, *, sorts: bool = False) -> bool:
    """Whether a plan reads the whole runs table, or sorts all the rows it found: a table
    scan, or a sort that no index spares (a sort of the rows that tie on an index's order,
    SQLite's "RIGHT PART", is a few rows and passes; so does any sort with `sorts`, for a
    query whose index range is small by itself)."""
    table = f"{PREFIX}runs"
    for line in plan.splitlines():
        step = line.strip().removeprefix("->").strip()
        if step.startswith(f"SCAN {table}") and "USING" not in step:
            return True  # SQLite, no index
        if step.startswith(f"Seq Scan on {table}"):
            return True  # PostgreSQL
        if not sorts and (step == "USE TEMP B-TREE FOR ORDER BY" or step.startswith("Sort ")):
            return True
    return False
