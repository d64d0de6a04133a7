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
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from app.config import MailBackend, Settings
from app.db import Base, make_engine, make_sessionmaker
from app.migrate import upgrade
from app.models import import_all

import_all()

PG_URL = os.environ.get("UNDERSIGNED_TEST_DATABASE_URL", "")
REQUIRE_ALL = os.environ.get("UNDERSIGNED_TEST_REQUIRE_ALL", "") not in ("", "0", "false")
TEST_SECRET = "test-secret-key-not-for-production"


def skip_or_fail(reason: str) -> None:
    """Skip, unless the run demands every test (CI), where a skip would hide a gap."""
    if REQUIRE_ALL:
        pytest.fail(f"required test could not run: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass
class Database:
    kind: str  # "sqlite" | "postgresql"
    url: str
    engine: Engine
    factory: sessionmaker[Session]

    def truncate(self) -> None:
        tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
        with self.engine.begin() as connection:
            if self.kind == "postgresql":
                connection.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
            else:
                for table in tables:
                    connection.execute(text(f"DELETE FROM {table}"))


def postgres_test_url(base_url: str, database: str) -> str:
    """Creates (fresh) `database` on the server of `base_url`; returns its URL."""
    url = make_url(base_url)
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    admin = make_engine(url.render_as_string(hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{database}"'))
    admin.dispose()
    return url.set(database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file; tests that commit get a copy of it."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _open_database(kind: str, tmp_path_factory: pytest.TempPathFactory, template: Path) -> Database:
    if kind == "postgresql":
        if not PG_URL:
            skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
        # One database per test run, so that runs side by side do not collide.
        url = postgres_test_url(PG_URL, f"undersigned_test_{os.getpid()}")
    else:
        path = tmp_path_factory.mktemp("sqlite") / "undersigned.db"
        shutil.copy(template, path)
        url = f"sqlite:///{path}"
    engine = make_engine(url)
    if kind == "postgresql":
        upgrade(engine)
    return Database(kind, url, engine, make_sessionmaker(engine))


def _close(db: Database) -> None:
    db.engine.dispose()
    if db.kind == "postgresql":
        admin = make_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://", 1),
                            isolation_level="AUTOCOMMIT")  # fmt: skip
        with admin.connect() as connection:
            name = make_url(db.url).database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def _postgres_database(
    tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path
) -> Iterator[Database]:
    """The run's one PostgreSQL database, shared by `database` and `postgres`."""
    db = _open_database("postgresql", tmp_path_factory, sqlite_template)
    yield db
    _close(db)


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
    db = _open_database("sqlite", tmp_path_factory, sqlite_template)
    yield db
    _close(db)


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
    database.truncate()
    return database


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "base_url": "http://testserver",
        "data_dir": tmp_path,
        "mail_backend": MailBackend.DEV,
        "rate_limits": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, database: Database) -> Settings:
    return make_settings(tmp_path, database.url)


def pytest_report_header(config: pytest.Config) -> list[str]:
    chromium = os.environ.get("UNDERSIGNED_TEST_CHROMIUM", "/usr/bin/chromium")
    return [
        "undersigned: PostgreSQL tests "
        + ("ON" if PG_URL else "SKIPPED (set UNDERSIGNED_TEST_DATABASE_URL)"),
        "undersigned: browser tests "
        + ("ON" if os.path.exists(chromium) else f"SKIPPED (no Chromium at {chromium})"),
        "undersigned: skips are "
        + ("FAILURES (UNDERSIGNED_TEST_REQUIRE_ALL)" if REQUIRE_ALL else "allowed"),
    ]
