"""Alembic, driven from code: `undersigned db upgrade`, `serve` and the tests use this.

Several app servers may start at once and each runs `upgrade`: on PostgreSQL an
advisory lock, held for the migration's transaction, makes them take turns (the
later ones then find nothing to do). SQLite's BEGIN IMMEDIATE does the same.
"""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, text

from app.config import MIGRATIONS_DIR, PROJECT_ROOT
from app.db import WRITE

MIGRATION_LOCK = 0x756E6465  # any constant shared by every process; "unde" in ASCII


def alembic_config() -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["configure_logging"] = False
    return config


def _locked(connection: Connection) -> Config:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.execution_options(**WRITE).begin() as connection:
        command.upgrade(_locked(connection), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    with engine.execution_options(**WRITE).begin() as connection:
        command.downgrade(_locked(connection), revision)
