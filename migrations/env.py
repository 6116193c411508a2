"""Alembic environment for flowstore's schema.

Used three ways: `alembic upgrade head` from a checkout (URL from `-x url=...`,
FLOWSTORE_DATABASE_URL or alembic.ini), `flowstore db upgrade` after a pip install, and the
store itself when it opens a database (it passes its own connection in
`config.attributes["connection"]`).
"""

from __future__ import annotations

import asyncio
import logging.config
import os

from alembic import context
from sqlalchemy.engine import Connection

from flowstore.store.engine import WRITE_OPTION, StoreSettings, create_engine, set_foreign_keys
from flowstore.store.schema import POSTGRESQL_ONLY_INDEXES, PREFIX, VERSION_TABLE, metadata

config = context.config
if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    # flowstore may share a database with an application: look only at its own tables.
    if type_ == "table":
        return bool(name and name.startswith(PREFIX))
    # An index made for PostgreSQL alone is not in the metadata Alembic compares with.
    return not (type_ == "index" and name in POSTGRESQL_ONLY_INDEXES)


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_object=_include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=False,
    )


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or os.environ.get(
        "FLOWSTORE_DATABASE_URL"
    )
    return url or config.get_main_option("sqlalchemy.url") or "sqlite+aiosqlite:///flowstore.db"


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = create_engine(StoreSettings(url=_database_url()))
    try:
        async with engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:  # see flowstore.store.migrate._migrate: rebuilt tables must not cascade
                await conn.run_sync(set_foreign_keys, False)
            conn = await conn.execution_options(**{WRITE_OPTION: True})
            await conn.run_sync(_run)
            if sqlite and (await conn.exec_driver_sql("PRAGMA foreign_key_check")).first():
                await conn.rollback()
                raise SystemExit("the migration would leave foreign keys that point nowhere")
            await conn.commit()
            if sqlite:
                await conn.run_sync(set_foreign_keys, True)
    finally:
        await engine.dispose()


given = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(
        url=_database_url(),
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif given is not None:
    _run(given)
else:
    asyncio.run(_run_with_own_engine())
