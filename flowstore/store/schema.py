"""The database schema: the single source of truth that the Alembic migrations reproduce.

Every table is prefixed `flowstore_` (and the Alembic version table is `flowstore_alembic_version`),
so flowstore can share an application's database. Constraints are named, so an integrity error
maps to a clear domain error, and the migrations can refer to them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from flowstore.store.records import NodeStatus, RunStatus, TransitionKind
from flowstore.store.types import JSONValue, UTCDateTime

__all__ = [
    "POSTGRESQL_ONLY_INDEXES",
    "PREFIX",
    "VERSION_TABLE",
    "breakers",
    "cache_entries",
    "checkpoints",
    "entities",
    "entity_history",
    "error_reports",
    "graphs",
    "llm_calls",
    "messages",
    "metadata",
    "metrics",
    "node_executions",
    "queues",
    "runs",
    "schedule_ticks",
    "schedules",
    "spans",
    "signals",
    "transitions",
    "waits",
    "workers",
]

PREFIX = "flowstore_"
VERSION_TABLE = f"{PREFIX}alembic_version"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
    }
)

NAME = String(200)
RUN_ID = String(36)
# An autoincrementing id: SQLite only autoincrements an INTEGER PRIMARY KEY.
SERIAL = BigInteger().with_variant(Integer(), "sqlite")


def _one_of(column: str, values: list[str]) -> str:
    quoted = ", ".join(f"'{value}'" for value in values)
    return f"{column} IN ({quoted})"


def _run_fk(ondelete: str) -> ForeignKey:
    return ForeignKey(f"{PREFIX}runs.id", ondelete=ondelete)


graphs = Table(
    f"{PREFIX}graphs",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("workflow", NAME, nullable=False),
    Column("version", String(100), nullable=False),
    Column("spec", JSONValue),
    Column("created_at", UTCDateTime, nullable=False),
)

runs = Table(
    f"{PREFIX}runs",
    metadata,
    Column("id", RUN_ID, primary_key=True),
    Column("workflow", NAME, nullable=False),
    Column("version", String(100), nullable=False),
    Column(
        "graph_hash",
        String(64),
        ForeignKey(f"{PREFIX}graphs.hash", ondelete="RESTRICT"),
        nullable=False,
    ),
    Column("status", String(16), nullable=False),
    Column("inputs", JSONValue, nullable=False),
    Column("output", JSONValue),
    Column("error", JSONValue),
    Column("parent_run_id", RUN_ID, _run_fk("SET NULL")),
    Column("priority", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    # The sequence number of the run's latest transition: the log's gapless counter.
    Column("last_seq", Integer, nullable=False),
    Column("lease_owner", NAME),
    Column("lease_expires_at", UTCDateTime),
    Column("fencing", Integer, nullable=False),
    # Set by `request_cancel` from any process; the owner sees it and cancels cooperatively.
    Column("cancel_requested_at", UTCDateTime),
    # A waiting run's earliest deadline (a sleep's end, a signal wait's timeout): claimable then.
    Column("wake_at", UTCDateTime),
    # The queue the run is in (`flowstore_queues`), and its key there (a per-key limit).
    Column("queue", NAME),
    Column("queue_key", NAME),
    CheckConstraint(_one_of("status", [s.value for s in RunStatus]), name="status"),
    # Listings, newest first (`list_runs`: creation time, then id), and retention.
    Index(None, "status", "created_at", "id"),
    Index(None, "status", "finished_at"),
    Index(None, "workflow", "created_at", "id"),
    Index(None, "created_at", "id"),
    Index(None, "parent_run_id"),
    Index(None, "lease_owner"),
    Index(None, "status", "wake_at"),
    # The starts of a queue's runs, newest last (its rate limit).
    Index(None, "queue", "started_at"),
)

# The claim order of each status (`ownership.claim_run`): its first row is the next run to claim,
# of the runs in no queue, and of each queue's (the key comes last, so a claim that passes
# over the keys at their limit reads the index alone). Each index holds only its own runs: a
# queue's backlog is never read by a claim of the runs in no queue.
Index(
    f"ix_{PREFIX}runs_claim",
    runs.c.status,
    runs.c.priority.desc(),
    runs.c.created_at,
    runs.c.id,
    sqlite_where=runs.c.queue.is_(None),
    postgresql_where=runs.c.queue.is_(None),
)
Index(
    f"ix_{PREFIX}runs_queue_claim",
    runs.c.queue,
    runs.c.status,
    runs.c.priority.desc(),
    runs.c.created_at,
    runs.c.id,
    runs.c.queue_key,
    sqlite_where=runs.c.queue.is_not(None),
    postgresql_where=runs.c.queue.is_not(None),
)

# Short ids (`runs.find_run_ids`): PostgreSQL's LIKE uses an index only in the "C" collation,
# or with the pattern operators of this one; SQLite reads a range of the primary key instead.
# Alembic's comparison cannot see an index made for one dialect alone: POSTGRESQL_ONLY_INDEXES
# names those it leaves out (migrations/env.py), and the migration tests check them by name.
POSTGRESQL_ONLY_INDEXES = frozenset({f"ix_{PREFIX}runs_id_prefix"})
Index(
    f"ix_{PREFIX}runs_id_prefix",
    runs.c.id,
    postgresql_ops={"id": "varchar_pattern_ops"},
).ddl_if(dialect="postgresql")

queues = Table(
    f"{PREFIX}queues",
    metadata,
    Column("name", NAME, primary_key=True),
    # At most this many of the queue's runs running at once, across every worker (NULL: any).
    Column("concurrency", Integer),
    # At most this many running at once per queue key.
    Column("per_key", Integer),
    # At most `rate_limit` runs started per `rate_period` seconds (a sliding window).
    Column("rate_limit", Integer),
    Column("rate_period", Float),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint("concurrency IS NULL OR concurrency >= 1", name="concurrency"),
    CheckConstraint("per_key IS NULL OR per_key >= 1", name="per_key"),
    CheckConstraint(
        "(rate_limit IS NULL AND rate_period IS NULL) OR (rate_limit >= 1 AND rate_period > 0)",
        name="rate",
    ),
)

schedules = Table(
    f"{PREFIX}schedules",
    metadata,
    Column("name", NAME, primary_key=True),
    Column("workflow", NAME, nullable=False),
    # When it ticks: a cron expression in `timezone`, or every so many seconds.
    Column("cron", String(200)),
    Column("every_seconds", Float),
    Column("timezone", String(64), nullable=False),
    Column("inputs", JSONValue, nullable=False),
    # Ticks found more than `grace_seconds` late: skipped, or the latest `catch_up_limit`
    # of them started.
    Column("missed", String(16), nullable=False),
    Column("catch_up_limit", Integer, nullable=False),
    Column("grace_seconds", Float, nullable=False),
    Column("queue", NAME),
    Column("queue_key", NAME),
    Column("priority", Integer, nullable=False),
    # The next tick: the one transaction that moves it on starts the runs of the ticks due.
    Column("next_at", UTCDateTime, nullable=False),
    Column("last_tick_at", UTCDateTime),
    Column("started", Integer, nullable=False),
    Column("skipped", Integer, nullable=False),
    Column("paused_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    CheckConstraint(
        "(cron IS NULL AND every_seconds > 0) OR (cron IS NOT NULL AND every_seconds IS NULL)",
        name="timing",
    ),
    CheckConstraint(_one_of("missed", ["skip", "catch_up"]), name="missed"),
    Index(None, "next_at"),
)

# One row per tick started: its key makes a second start of one tick impossible.
schedule_ticks = Table(
    f"{PREFIX}schedule_ticks",
    metadata,
    Column(
        "schedule",
        NAME,
        ForeignKey(f"{PREFIX}schedules.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("tick_at", UTCDateTime, nullable=False),
    Column("run_id", RUN_ID, _run_fk("SET NULL")),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("schedule", "tick_at"),
    Index(None, "run_id"),
)

node_executions = Table(
    f"{PREFIX}node_executions",
    metadata,
    Column("run_id", RUN_ID, _run_fk("CASCADE"), nullable=False),
    Column("node", NAME, nullable=False),
    Column("exec_key", NAME, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("input", JSONValue),
    Column("output", JSONValue),
    Column("error", JSONValue),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_seq", Integer, nullable=False),
    # How long the execution took, measured by its worker (all attempts, not the queue).
    Column("duration_ms", Float),
    # The execution's trace span (the view flowstore_trace shows the row as that span).
    Column("span_id", String(32)),
    PrimaryKeyConstraint("run_id", "node", "exec_key"),
    CheckConstraint(_one_of("status", [s.value for s in NodeStatus]), name="status"),
)

transitions = Table(
    f"{PREFIX}transitions",
    metadata,
    Column("run_id", RUN_ID, _run_fk("CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", NAME),
    Column("node", NAME),
    Column("exec_key", NAME, nullable=False),
    Column("status", String(16)),
    Column("attempt", Integer),
    Column("payload", JSONValue),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
    CheckConstraint(_one_of("kind", [k.value for k in TransitionKind]), name="kind"),
)

checkpoints = Table(
    f"{PREFIX}checkpoints",
    metadata,
    Column("run_id", RUN_ID, _run_fk("CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("state", JSONValue, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
)

waits = Table(
    f"{PREFIX}waits",
    metadata,
    Column("run_id", RUN_ID, _run_fk("CASCADE"), nullable=False),
    Column("node", NAME, nullable=False),
    Column("exec_key", NAME, nullable=False),
    # The wait's number within its node execution: the node's second wait is 2.
    Column("seq", Integer, nullable=False),
    Column("kind", String(16), nullable=False),
    # The signal waited for.
    Column("name", NAME),
    Column("started_at", UTCDateTime, nullable=False),
    # When a sleep ends, or a signal wait times out.
    Column("wake_at", UTCDateTime),
    Column("ended_at", UTCDateTime),
    Column("outcome", String(16)),
    # The signal that ended it.
    Column("signal_id", SERIAL),
    PrimaryKeyConstraint("run_id", "node", "exec_key", "seq"),
    CheckConstraint(_one_of("kind", ["sleep", "signal"]), name="kind"),
    CheckConstraint(
        f"outcome IS NULL OR {_one_of('outcome', ['woke', 'signalled', 'timed_out'])}",
        name="outcome",
    ),
)

signals = Table(
    f"{PREFIX}signals",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("run_id", RUN_ID, _run_fk("CASCADE"), nullable=False),
    Column("name", NAME, nullable=False),
    Column("payload", JSONValue),
    # Sending twice with one key stores one signal.
    Column("idempotency_key", NAME),
    Column("created_at", UTCDateTime, nullable=False),
    Column("consumed_at", UTCDateTime),
    UniqueConstraint("run_id", "idempotency_key"),
    Index(None, "run_id", "name", "consumed_at"),
)

workers = Table(
    f"{PREFIX}workers",
    metadata,
    Column("id", NAME, primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
    Column("metadata", JSONValue),
    Index(None, "heartbeat_at"),
)

cache_entries = Table(
    f"{PREFIX}cache",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("workflow", NAME, nullable=False),
    Column("node", NAME, nullable=False),
    Column("value", JSONValue, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Index(None, "workflow", "node"),
    Index(None, "expires_at"),
)

messages = Table(
    f"{PREFIX}messages",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("thread_id", NAME, nullable=False),
    Column("role", String(50), nullable=False),
    Column("content", JSONValue, nullable=False),
    Column("metadata", JSONValue),
    Column("run_id", RUN_ID, _run_fk("SET NULL")),
    Column("node", NAME),
    Column("tokens", Integer),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime),
    Index(None, "thread_id", "id"),
    Index(None, "run_id"),
)

entities = Table(
    f"{PREFIX}entities",
    metadata,
    Column("namespace", NAME, nullable=False),
    Column("name", NAME, nullable=False),
    Column("attributes", JSONValue, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("namespace", "name"),
)

entity_history = Table(
    f"{PREFIX}entity_history",
    metadata,
    Column("namespace", NAME, nullable=False),
    Column("name", NAME, nullable=False),
    Column("version", Integer, nullable=False),
    Column("attributes", JSONValue, nullable=False),
    Column("run_id", RUN_ID, _run_fk("SET NULL")),
    Column("changed_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("namespace", "name", "version"),
    Index(None, "run_id"),
    ForeignKeyConstraint(
        ["namespace", "name"],
        [f"{PREFIX}entities.namespace", f"{PREFIX}entities.name"],
        ondelete="CASCADE",
    ),
)

error_reports = Table(
    f"{PREFIX}error_reports",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("run_id", RUN_ID, _run_fk("CASCADE")),
    Column("node", NAME),
    Column("exec_key", NAME, nullable=False),
    Column("attempt", Integer),
    Column("error_type", NAME, nullable=False),
    Column("message", Text, nullable=False),
    Column("traceback", Text),
    Column("outcome", String(32)),
    Column("details", JSONValue),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "run_id"),
    Index(None, "created_at"),
)

metrics = Table(
    f"{PREFIX}metrics",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False),
    Column("value", Float, nullable=False),
    Column("workflow", NAME),
    Column("node", NAME),
    Column("run_id", RUN_ID, _run_fk("CASCADE")),
    Column("labels", JSONValue),
    Column("recorded_at", UTCDateTime, nullable=False),
    Index(None, "workflow", "node", "name"),
    Index(None, "run_id"),
    Index(None, "recorded_at"),
)

spans = Table(
    f"{PREFIX}spans",
    metadata,
    Column("span_id", String(32), primary_key=True),
    Column("trace_id", String(32), nullable=False),
    Column("parent_span_id", String(32)),
    Column("name", NAME, nullable=False),
    Column("run_id", RUN_ID, _run_fk("CASCADE")),
    Column("node", NAME),
    Column("exec_key", NAME, nullable=False),
    Column("attempt", Integer),
    Column("started_at", UTCDateTime, nullable=False),
    Column("ended_at", UTCDateTime),
    Column("status", String(16)),
    Column("attributes", JSONValue),
    Index(None, "trace_id"),
    Index(None, "run_id"),
)

breakers = Table(
    f"{PREFIX}breakers",
    metadata,
    Column("name", NAME, primary_key=True),
    Column("state", String(16), nullable=False),
    Column("failure_count", Integer, nullable=False),
    Column("success_count", Integer, nullable=False),
    Column("opened_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    CheckConstraint(_one_of("state", ["closed", "open", "half_open"]), name="state"),
)

llm_calls = Table(
    f"{PREFIX}llm_calls",
    metadata,
    Column("id", SERIAL, primary_key=True, autoincrement=True),
    # SET NULL by retention that keeps statistics; else deleted with the run.
    Column("run_id", RUN_ID, _run_fk("CASCADE")),
    Column("seq", Integer, nullable=False),
    Column("workflow", NAME, nullable=False),
    Column("node", NAME, nullable=False),
    Column("exec_key", NAME, nullable=False),
    Column("attempt", Integer),
    Column("endpoint", String(500), nullable=False),
    Column("model", NAME, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer),
    Column("finish_reason", String(32)),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("total_tokens", Integer),
    Column("cost", Float),
    Column("latency_ms", Float, nullable=False),
    Column("first_token_ms", Float),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("run_id", "seq"),
    Index(None, "workflow", "node", "model"),
    Index(None, "created_at"),
    CheckConstraint(_one_of("outcome", ["ok", "cached", "failed"]), name="outcome"),
)
