"""Schema migrations: the Alembic revisions, applied from a checkout or from the wheel.

The revisions live in `migrations/` at the top of a checkout (for `alembic upgrade head`) and
ship inside the wheel as `flowstore/_migrations`, so `flowstore db upgrade` works after a plain
`pip install`. Both paths run the same `env.py` and the same revision files.

Opening a store checks the revision without Alembic: a database at `HEAD_REVISION` needs no
migration, and a new, empty one is created from `schema.py` and stamped at the head in one
transaction (Alembic's own recipe for a database built from scratch; a test checks that it
equals the migrated schema on both backends). Alembic, about 11 MB of memory and a tenth of a
second, is imported only to upgrade a database that is behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from flowstore.errors import SchemaError
from flowstore.store.engine import WRITE_OPTION, set_foreign_keys, translate_errors
from flowstore.store.schema import PREFIX, VERSION_TABLE, metadata
from flowstore.store.views import VIEWS

if TYPE_CHECKING:
    from alembic.config import Config

__all__ = [
    "HEAD_REVISION",
    "SchemaStatus",
    "alembic_config",
    "check_schema",
    "create_schema",
    "downgrade",
    "head_revision",
    "migrations_location",
    "schema_status",
    "upgrade",
]

HEAD_REVISION: Final = "0011"
"""The newest revision, as `head_revision()` reads it from the revisions (a test checks)."""

# Alembic's version table, as Alembic creates it.
_versions = Table(
    VERSION_TABLE,
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name=f"{VERSION_TABLE}_pkc"),
)

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
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_location()))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest revision this version of flowstore knows, read from the revisions."""
    from alembic.script import ScriptDirectory

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
    tables = inspect(connection).get_table_names()
    current = None
    if VERSION_TABLE in tables:
        current = connection.execute(select(_versions.c.version_num)).scalar()
    return SchemaStatus(
        current=current,
        head=HEAD_REVISION,
        has_tables=any(name.startswith(PREFIX) and name != VERSION_TABLE for name in tables),
    )


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    """Read the schema revision of the database behind `engine`."""
    async with translate_errors("reading the schema revision"), engine.connect() as conn:
        return await conn.run_sync(_status)


def _run_command(connection: Connection, name: str, revision: str) -> None:
    from alembic import command
    from alembic.util import CommandError

    config = alembic_config()
    config.attributes["connection"] = connection
    try:
        getattr(command, name)(config, revision)
    except CommandError as error:  # an unknown revision, say: the user's to fix
        raise SchemaError(
            f"{name} to {revision!r}: {error} (base, head = {HEAD_REVISION}, or a revision in "
            "between)"
        ) from None


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply the migrations up to `revision`, in one transaction."""
    async with translate_errors("upgrading the schema"), engine.connect() as conn:
        await _migrate(conn, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Revert the migrations down to `revision` (`base` removes every flowstore table)."""
    async with translate_errors("downgrading the schema"), engine.connect() as conn:
        await _migrate(conn, "downgrade", revision)


async def _migrate(conn: AsyncConnection, command: str, revision: str) -> None:
    """Run an Alembic command in one transaction. On SQLite, foreign keys are not enforced
    meanwhile: a migration that rebuilds a table (to change a CHECK constraint) drops the old
    one, and with enforcement on that would delete the rows that refer to it. Every foreign
    key is checked before the transaction commits instead."""
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        await conn.run_sync(set_foreign_keys, False)
    try:
        conn = await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            await conn.run_sync(_run_command, command, revision)
            if sqlite:
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).fetchall()
                if broken:
                    raise SchemaError(
                        f"{command} to {revision!r} would leave {len(broken)} rows whose "
                        f"foreign keys point nowhere (first: {tuple(broken[0])}); nothing was "
                        "changed"
                    )
    finally:
        if sqlite:
            await conn.run_sync(set_foreign_keys, True)


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
    if status.current is None:
        await create_schema(engine)
    else:
        await upgrade(engine)
    return await schema_status(engine)


async def create_schema(engine: AsyncEngine) -> None:
    """Create the current schema in an empty database and stamp it at the head revision, in
    one transaction (what upgrading from nothing gives, without running every revision)."""
    async with translate_errors("creating the schema"), engine.connect() as conn:
        conn = await conn.execution_options(**{WRITE_OPTION: True})
        async with conn.begin():
            await conn.run_sync(_create)


def _create(connection: Connection) -> None:
    if _status(connection).current is not None:  # another process was first
        return
    metadata.create_all(connection)
    for view in VIEWS:
        connection.execute(view)
    _versions.create(connection)
    connection.execute(_versions.insert().values(version_num=HEAD_REVISION))


def _is_known(revision: str) -> bool:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    try:
        return script.get_revision(revision) is not None
    except Exception:  # alembic raises several types for an unknown id
        return False
