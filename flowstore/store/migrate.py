"""Schema migrations: the Alembic revisions, applied from a checkout or from the wheel.

The revisions live in `migrations/` at the top of a checkout (for `alembic upgrade head`) and
ship inside the wheel as `flowstore/_migrations`, so `flowstore db upgrade` works after a plain
`pip install`. Both paths run the same `env.py` and the same revision files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from flowstore.errors import SchemaError
from flowstore.store.engine import WRITE_OPTION, translate_errors
from flowstore.store.schema import PREFIX, VERSION_TABLE

__all__ = [
    "SchemaStatus",
    "alembic_config",
    "check_schema",
    "downgrade",
    "head_revision",
    "migrations_location",
    "schema_status",
    "upgrade",
]

_PACKAGE = Path(__file__).resolve().parent.parent


def migrations_location() -> Path:
    """Where the Alembic revisions are: inside the installed package, else in the checkout."""
    for candidate in (_PACKAGE / "_migrations", _PACKAGE.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise SchemaError(
        f"the flowstore migrations are missing (looked in {_PACKAGE / '_migrations'} and "
        f"{_PACKAGE.parent / 'migrations'}); reinstall flowstore"
    )


def alembic_config(url: str | None = None) -> Config:
    """An Alembic configuration for flowstore's revisions, without an ini file."""
    config = Config()
    config.set_main_option("script_location", str(migrations_location()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this version of flowstore knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise SchemaError("the flowstore migrations have no head revision; reinstall flowstore")
    return head


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a database's schema stands.

    Attributes:
        current: The revision the database is at; `None` for a database flowstore never set up.
        head: The revision this version of flowstore needs.
        has_tables: Whether any flowstore table exists.
    """

    current: str | None
    head: str
    has_tables: bool

    @property
    def up_to_date(self) -> bool:
        """Whether the schema is at the head revision."""
        return self.current == self.head


def _status(connection: Connection) -> SchemaStatus:
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    tables = inspect(connection).get_table_names()
    return SchemaStatus(
        current=context.get_current_revision(),
        head=head_revision(),
        has_tables=any(name.startswith(PREFIX) and name != VERSION_TABLE for name in tables),
    )


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """Read the schema revision of the database behind `engine`."""
    async with translate_errors("reading the schema revision"), engine.connect() as conn:
        return await conn.run_sync(_status)


def _run_command(connection: Connection, name: str, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    getattr(command, name)(config, revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply the migrations up to `revision`, in one transaction."""
    async with translate_errors("upgrading the schema"), engine.connect() as conn:
        conn = await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            await conn.run_sync(_run_command, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Revert the migrations down to `revision` (`base` removes every flowstore table)."""
    async with translate_errors("downgrading the schema"), engine.connect() as conn:
        conn = await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            await conn.run_sync(_run_command, "downgrade", revision)


async def check_schema(engine: AsyncEngine, *, auto_upgrade: bool, url: str) -> SchemaStatus:
    """Make sure the schema is at head: upgrade it when allowed, else explain what to run.

    Raises:
        SchemaError: The schema is behind and may not be upgraded here, or it is at a
            revision this version of flowstore does not know (a newer flowstore wrote it).
    """
    status = await schema_status(engine)
    if status.up_to_date:
        return status
    if status.current is not None and not _is_known(status.current):
        raise SchemaError(
            f"the database at {url} is at schema revision {status.current}, which this "
            f"version of flowstore does not know (it needs {status.head}): it was upgraded "
            "by a newer flowstore; upgrade flowstore itself"
        )
    if status.current is None and status.has_tables:
        raise SchemaError(
            f"the database at {url} has flowstore tables but no {VERSION_TABLE} table: it "
            "was not created by flowstore's migrations; move it aside and run "
            f"`flowstore db upgrade --url {url}`"
        )
    if not auto_upgrade:
        found = "no flowstore schema" if status.current is None else f"revision {status.current}"
        raise SchemaError(
            f"the database at {url} has {found}, and this version of flowstore needs "
            f"revision {status.head}: run `flowstore db upgrade --url {url}`"
        )
    await upgrade(engine)
    return await schema_status(engine)


def _is_known(revision: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config())
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several types for an unknown id
        return False
