"""PostgreSQL databases of a run's own, for tests and bench alike: created fresh next to
the server URL given, dropped at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import make_url, text

from app.db import Base, Database, make_engine


def _server_url(server_url: str, database: str) -> str:
    url = make_url(server_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    return url.set(database=database).render_as_string(hide_password=False)


def _run(server_url: str, *statements: str) -> None:
    """On the server's `postgres` maintenance database, whatever database the URL names
    (it may be the one being dropped)."""
    admin = make_engine(
        _server_url(server_url, "postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 5},
    )
    try:
        with admin.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        admin.dispose()


def create_postgres_database(server_url: str, name: str) -> str:
    """Creates `name` afresh (dropping any leftover) on the server; returns its URL."""
    _run(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
    return _server_url(server_url, name)


def copy_postgres_database(server_url: str, template: str, name: str) -> str:
    """`name` afresh as a copy of `template` (which nobody may be connected to); its URL."""
    _run(
        server_url,
        f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',
        f'CREATE DATABASE "{name}" TEMPLATE "{template}"',
    )
    return _server_url(server_url, name)


def drop_postgres_database(server_url: str, name: str) -> None:
    _run(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def scratch_postgres_database(server_url: str, purpose: str) -> Iterator[str]:
    """`undersigned_<purpose>_<pid>`, fresh on the server, dropped at the end: its URL."""
    name = f"undersigned_{purpose}_{os.getpid()}"
    url = create_postgres_database(server_url, name)
    try:
        yield url
    finally:
        drop_postgres_database(server_url, name)


def postgres_reachable(server_url: str) -> bool:
    try:
        _run(server_url, "SELECT 1")
    except Exception:
        return False
    return True


def truncate(database: Database) -> None:
    """Empties every table (for tests that really commit)."""
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    with database.write() as session:
        if database.dialect == "postgresql":
            session.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                session.execute(text(f"DELETE FROM {table}"))
