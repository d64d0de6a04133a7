"""Migrations: upgrade, downgrade, upgrade on both databases, and no drift from the models.

Each run uses a database of its own (not the shared test database), because it drops
every table on the way down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect, make_url, text

from app.db import Base, make_engine
from app.migrate import downgrade, upgrade
from app.models import import_all
from tests.conftest import PG_URL, postgres_test_url, skip_or_fail

import_all()

EXPECTED_TABLES = {"letters", "letter_tallies", "signatures", "outbox_emails"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of this test's own."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'migrations.db'}")
        yield engine
        engine.dispose()
        return
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    url = postgres_test_url(PG_URL, f"undersigned_migr_{os.getpid()}")
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        admin = make_engine(
            make_url(url).set(database="postgres").render_as_string(hide_password=False),
            isolation_level="AUTOCOMMIT",
        )
        with admin.connect() as connection:
            name = make_url(url).database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={"compare_type": True, "target_metadata": Base.metadata},
        )
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_downgrade_upgrade(fresh_engine: Engine) -> None:
    assert _tables(fresh_engine) == set()

    upgrade(fresh_engine)
    assert _tables(fresh_engine) >= EXPECTED_TABLES | {"alembic_version"}
    assert _current_revision(fresh_engine) is not None

    downgrade(fresh_engine, "base")
    assert _tables(fresh_engine) & EXPECTED_TABLES == set()
    assert _current_revision(fresh_engine) is None

    upgrade(fresh_engine)
    assert _tables(fresh_engine) >= EXPECTED_TABLES
    assert _differences(fresh_engine) == []


def test_migrations_match_the_models(fresh_engine: Engine) -> None:
    """Alembic autogenerate sees nothing to do: the migrations build exactly the models."""
    upgrade(fresh_engine)
    assert set(Base.metadata.tables) == EXPECTED_TABLES
    assert _differences(fresh_engine) == []


def test_the_drift_check_can_fail(fresh_engine: Engine) -> None:
    """A table the models do not know about is reported: the check above is not vacuous."""
    upgrade(fresh_engine)
    with fresh_engine.begin() as connection:
        connection.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
    differences = _differences(fresh_engine)
    assert any(diff[0] == "remove_table" and diff[1].name == "stray" for diff in differences)  # type: ignore[index]


def test_sqlite_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        with engine.connect() as connection:

            def pragma(name: str) -> object:
                return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert str(pragma("journal_mode")).lower() == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("secure_delete") == 1
            busy_timeout = pragma("busy_timeout")
            assert isinstance(busy_timeout, int)
            assert busy_timeout > 0
    finally:
        engine.dispose()


def test_servers_starting_together_migrate_once(fresh_engine: Engine) -> None:
    """`serve` migrates at start: several processes at once must take turns."""
    import threading

    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start_one() -> None:
        barrier.wait()
        try:
            upgrade(fresh_engine)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert _tables(fresh_engine) >= EXPECTED_TABLES
    assert _differences(fresh_engine) == []
