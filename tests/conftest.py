"""Shared fixtures. Tests run against real databases:

- SQLite always;
- PostgreSQL when UNDERSIGNED_TEST_DATABASE_URL is set (a server URL such as
  postgresql+psycopg://postgres@127.0.0.1:5432/test; the tests create, use and drop
  their own database `undersigned_test_<pid>` next to it).

With UNDERSIGNED_TEST_REQUIRE_ALL=1 (CI sets it) a PostgreSQL or browser test that
cannot run fails instead of being skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from app.config import MailBackend, Settings
from app.db import Database
from app.migrate import upgrade
from app.models import import_all
from tests.support.browser import chromium_path
from tests.support.config import PG_URL, REQUIRE_ALL, make_settings, skip_or_fail
from tests.support.databases import (
    create_postgres_database,
    drop_postgres_database,
    truncate,
)
from tests.support.smtp import SmtpServer, running_smtp_server

import_all()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; tests that commit get a copy of it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    database = Database(f"sqlite:///{path}")
    upgrade(database)
    database.dispose()
    return path


def sqlite_copy(template: Path, directory: Path, name: str = "undersigned.db") -> str:
    """A copy of the migrated template in `directory`; returns its URL."""
    path = directory / name
    shutil.copy(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def _postgres_database() -> Iterator[Database]:
    """The run's one PostgreSQL database (one per test run, so that runs side by side
    do not collide), shared by `database` and `postgres`."""
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    name = f"undersigned_test_{os.getpid()}"
    database = Database(create_postgres_database(PG_URL, name))
    upgrade(database)
    yield database
    database.dispose()
    drop_postgres_database(PG_URL, name)


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    sqlite_template: Path,
) -> Iterator[Database]:
    """Each test that uses it runs on SQLite and on PostgreSQL."""
    if request.param == "postgresql":
        yield request.getfixturevalue("_postgres_database")
        return
    database = Database(sqlite_copy(sqlite_template, tmp_path_factory.mktemp("sqlite")))
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def postgres(_postgres_database: Database) -> Database:
    """PostgreSQL only (concurrency tests)."""
    return _postgres_database


@pytest.fixture
def session(database: Database) -> Iterator[Session]:
    """A session whose work is rolled back after the test (commits become savepoints)."""
    with database.engine.connect() as connection:
        transaction = connection.begin()
        with Session(
            bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
        ) as session:
            yield session
        transaction.rollback()


@pytest.fixture
def clean_database(database: Database) -> Database:
    """For tests that really commit (workers, threads): starts empty."""
    truncate(database)
    return database


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free loopback port."""
    with running_smtp_server() as server:
        yield server


@pytest.fixture
def smtp_settings(tmp_path: Path, clean_database: Database, smtp_server: SmtpServer) -> Settings:
    return make_settings(
        tmp_path,
        clean_database.url,
        mail_backend=MailBackend.SMTP,
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        smtp_timeout_seconds=5.0,
    )


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    return make_settings(tmp_path, database.url)


def pytest_report_header(config: pytest.Config) -> list[str]:
    chromium = chromium_path()
    return [
        "undersigned: PostgreSQL tests "
        + ("ON" if PG_URL else "SKIPPED (set UNDERSIGNED_TEST_DATABASE_URL)"),
        "undersigned: browser tests "
        + ("ON" if chromium else "SKIPPED (no Chromium; set UNDERSIGNED_TEST_CHROMIUM)"),
        "undersigned: skips are "
        + ("FAILURES (UNDERSIGNED_TEST_REQUIRE_ALL)" if REQUIRE_ALL else "allowed"),
    ]
