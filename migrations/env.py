"""Alembic environment: the schema of storage.models on the database the caller names."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine

from storage.models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    """The bot passes its DATABASE_URL setting; by hand, `-x url=...` or the environment."""
    url = (config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
           or os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url"))
    if not url:
        raise SystemExit("migrations: no database URL (pass -x url=... or set DATABASE_URL)")
    return str(url)


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True, compare_type=True)
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # Batch mode copies tables to alter them; with foreign keys on, dropping the old copy would
        # cascade. The pragma only takes effect outside a transaction, hence the raw connection.
        connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
    try:
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine(database_url())
    try:
        with engine.connect() as connection:
            run_on(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=database_url(), target_metadata=Base.metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
