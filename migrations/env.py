"""Alembic environment. The URL comes from Settings, or a connection is handed in
through `config.attributes["connection"]` (tests, `app.migrate`)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection

from app.db import Base, Database
from app.migrate import include_object_for
from app.models import import_all

import_all()
config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)
target_metadata = Base.metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=include_object_for(connection.dialect.name),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_with(connection)
        return
    from app.config import Settings

    settings = Settings()
    config.attributes["secret_key"] = settings.secret
    database = Database(settings.database_url)
    try:
        with database.write_connection() as connection:
            run_with(connection)
    finally:
        database.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline migrations are not supported; run against a database.")
run_migrations_online()
