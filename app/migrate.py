"""Alembic, driven from code: `undersigned db upgrade`, `serve` and the tests use this.

The configuration is built here rather than read from alembic.ini, so an installed
wheel (which has no alembic.ini) migrates too; alembic.ini serves the `alembic` command
in a checkout (`make migration`).

Several app servers may start at once and each runs `upgrade`: on PostgreSQL an
advisory lock, held for the migration's transaction, makes them take turns (the
later ones then find nothing to do). SQLite's BEGIN IMMEDIATE does the same.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from app.config import MIGRATIONS_DIR
from app.db import Database

MIGRATION_LOCK = 0x756E6465  # any constant shared by every process; "unde" in ASCII


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["configure_logging"] = False
    return config


def _locked(connection: Connection) -> Config:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    with database.write_connection() as connection:
        command.upgrade(_locked(connection), revision)


def downgrade(database: Database, revision: str = "base") -> None:
    with database.write_connection() as connection:
        command.downgrade(_locked(connection), revision)
