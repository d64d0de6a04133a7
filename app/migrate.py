"""Alembic, driven from code: `undersigned db upgrade`, `serve` and the tests use this.

The configuration is built here rather than read from alembic.ini, so an installed
wheel (which has no alembic.ini) migrates too; alembic.ini serves the `alembic` command
in a checkout (`make migration`).

Several app servers may start at once and each runs `upgrade`: on PostgreSQL an
advisory lock, held for the migration's transaction, makes them take turns (the
later ones then find nothing to do). SQLite's BEGIN IMMEDIATE does the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text

from app.config import MIGRATIONS_DIR
from app.db import Database

MIGRATION_LOCK = 0x756E6465  # any constant shared by every process; "unde" in ASCII


SQLITE_SEARCH_TABLE = "signatures_search"
"""SQLite's FTS5 trigram index of signer names (migration 0004): a virtual table and its
shadow tables, managed by migrations alone, so autogenerate must not see them."""


def include_object_for(dialect: str) -> Callable[..., bool]:
    """Alembic's `include_object` for autogenerate: what the models cannot describe on
    this database (SQLite's search table; PostgreSQL's trigram indexes elsewhere)."""

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool, *_: Any) -> bool:
        if type_ == "table" and (name or "").startswith(SQLITE_SEARCH_TABLE):
            return False
        return not (type_ == "index" and (name or "").endswith("_trgm") and dialect != "postgresql")

    return include_object


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["configure_logging"] = False
    return config


def _locked(connection: Connection, secret_key: str | None = None) -> Config:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    # For data migrations that re-key stored hashes (0004); never logged or stored.
    config.attributes["secret_key"] = secret_key
    return config


def upgrade(database: Database, revision: str = "head", *, secret_key: str | None = None) -> None:
    """`secret_key` is needed only when a migration must re-key existing rows."""
    with database.write_connection() as connection:
        command.upgrade(_locked(connection, secret_key), revision)


def downgrade(database: Database, revision: str = "base") -> None:
    with database.write_connection() as connection:
        command.downgrade(_locked(connection), revision)
