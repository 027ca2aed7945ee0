"""Alembic environment, async: the same engine set-up (and SQLite pragmas) as the app."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from chat.db import create_engine
from chat.models import SEARCH_INDEX_OBJECTS, Base
from chat.settings import DEFAULT_DATABASE_URL

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> str:
    return config.get_main_option("sqlalchemy.url") or os.environ.get(
        "CHAT_DATABASE_URL", DEFAULT_DATABASE_URL
    )


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """The search index (FTS5 tables, tsvector column, GIN index) is made by raw DDL
    beside the models, so autogenerate must not take it for drift."""
    return name not in SEARCH_INDEX_OBJECTS


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode copies the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_engine(database_url())
    async with engine.connect() as connection:
        await connection.run_sync(run_migrations)
    await engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(run_async_migrations())
