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
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect, text

from app.db import Base, Database
from app.migrate import alembic_config, downgrade, include_object_for, upgrade
from app.models import import_all
from tests.support.config import PG_URL, skip_or_fail
from tests.support.databases import create_postgres_database, drop_postgres_database

import_all()

EXPECTED_TABLES = {
    "letters",
    "letter_tallies",
    "signatures",
    "pending_signatures",
    "letter_versions",
    "abuse_events",
    "letter_roles",
    "letter_updates",
    "organizers",
    "organizer_sessions",
    "login_links",
    "audit_events",
    "outbox_emails",
    "secret_fingerprints",
    "spent_challenges",
    "letter_translations",
    "letter_images",
    "log_entries",
    "log_hashes",
    "log_heads",
    "log_checkpoints",
}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of this test's own."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'migrations.db'}")
        yield database
        database.dispose()
        return
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    name = f"undersigned_migr_{os.getpid()}"
    database = Database(create_postgres_database(PG_URL, name))
    try:
        yield database
    finally:
        database.dispose()
        drop_postgres_database(PG_URL, name)


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "target_metadata": Base.metadata,
                "include_object": include_object_for(connection.dialect.name),
            },
        )
        return list(compare_metadata(context, Base.metadata))


def test_upgrade_downgrade_upgrade(fresh_database: Database) -> None:
    assert _tables(fresh_database.engine) == set()

    upgrade(fresh_database)
    assert _tables(fresh_database.engine) >= EXPECTED_TABLES | {"alembic_version"}
    assert _current_revision(fresh_database.engine) is not None

    downgrade(fresh_database, "base")
    assert _tables(fresh_database.engine) & EXPECTED_TABLES == set()
    assert _current_revision(fresh_database.engine) is None

    upgrade(fresh_database)
    assert _tables(fresh_database.engine) >= EXPECTED_TABLES
    assert _differences(fresh_database.engine) == []


def test_migrations_match_the_models(fresh_database: Database) -> None:
    """Alembic autogenerate sees nothing to do: the migrations build exactly the models."""
    upgrade(fresh_database)
    assert set(Base.metadata.tables) == EXPECTED_TABLES
    assert _differences(fresh_database.engine) == []


def test_the_drift_check_can_fail(fresh_database: Database) -> None:
    """A table the models do not know about is reported: the check above is not vacuous."""
    upgrade(fresh_database)
    with fresh_database.engine.begin() as connection:
        connection.execute(text("CREATE TABLE stray (id INTEGER PRIMARY KEY)"))
    differences = _differences(fresh_database.engine)
    assert any(diff[0] == "remove_table" and diff[1].name == "stray" for diff in differences)  # type: ignore[index]


def test_sqlite_pragmas(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'pragmas.db'}")
    try:
        with database.engine.connect() as connection:

            def pragma(name: str) -> object:
                return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert str(pragma("journal_mode")).lower() == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("secure_delete") == 1
            busy_timeout = pragma("busy_timeout")
            assert isinstance(busy_timeout, int)
            assert busy_timeout > 0
    finally:
        database.dispose()


def test_servers_starting_together_migrate_once(fresh_database: Database) -> None:
    """`serve` migrates at start: several processes at once must take turns."""
    import threading

    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def start_one() -> None:
        barrier.wait()
        try:
            upgrade(fresh_database)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert _tables(fresh_database.engine) >= EXPECTED_TABLES
    assert _differences(fresh_database.engine) == []


def test_there_is_one_head() -> None:
    """Two revisions with the same parent (two branches merged without a merge
    revision) would make `upgrade head` fail in production."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"several migration heads: {heads}"


def test_sqlite_search_triggers_survive_every_migration(tmp_path: Path) -> None:
    """Batch alterations copy a SQLite table, and the copy loses its triggers: the
    signer search (0004) would silently stop following new signatures."""
    database = Database(f"sqlite:///{tmp_path / 'triggers.db'}")
    try:
        upgrade(database)
        with database.engine.connect() as connection:
            triggers = set(
                connection.exec_driver_sql(
                    "SELECT name FROM sqlite_master WHERE type = 'trigger' "
                    "AND tbl_name = 'signatures'"
                ).scalars()
            )
    finally:
        database.dispose()
    assert triggers == {
        "signatures_search_insert",
        "signatures_search_update",
        "signatures_search_delete",
    }
