"""One SECRET_KEY per database: recorded by the first process, refused if different."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from app.config import Settings
from app.db import Database
from app.keycheck import (
    KeyCheckFailed,
    SecretFingerprint,
    SecretKeyMismatch,
    check_secret_key,
)
from app.main import create_app
from tests.support.config import TEST_SECRET, make_settings

OTHER_SECRET = "another-secret-key-0123456789-abcdefghij"
MISMATCH = "different SECRET_KEY than the one this database was used with"


@pytest.fixture
def fingerprints(database: Database) -> Iterator[Database]:
    """The database with no fingerprint, and with none of this test's left behind (the
    PostgreSQL database is shared with every test of the run, all with TEST_SECRET)."""

    def clear() -> None:
        with database.write() as session:
            session.execute(delete(SecretFingerprint))

    clear()
    yield database
    clear()


def _stored(database: Database) -> list[tuple[str, str]]:
    with database.read() as session:
        rows = session.execute(select(SecretFingerprint.name, SecretFingerprint.fingerprint))
        return [(name, value) for name, value in rows]


def _settings(tmp_path: Path, database: Database, secret: str) -> Settings:
    return make_settings(tmp_path, database.url, secret_key=secret)


def test_the_first_start_records_a_fingerprint_never_the_key(
    fingerprints: Database, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, fingerprints, TEST_SECRET)
    check_secret_key(fingerprints, settings)

    expected = hmac.new(
        TEST_SECRET.encode(), b"undersigned/fingerprint/v1", hashlib.sha256
    ).hexdigest()
    assert _stored(fingerprints) == [("secret_key", expected)]
    check_secret_key(fingerprints, settings)  # the same key again: fine, nothing added
    assert _stored(fingerprints) == [("secret_key", expected)]


def test_another_key_is_refused(fingerprints: Database, tmp_path: Path) -> None:
    check_secret_key(fingerprints, _settings(tmp_path, fingerprints, TEST_SECRET))
    before = _stored(fingerprints)

    with pytest.raises(SecretKeyMismatch, match=MISMATCH) as refused:
        check_secret_key(fingerprints, _settings(tmp_path, fingerprints, OTHER_SECRET))
    assert OTHER_SECRET not in str(refused.value)
    assert TEST_SECRET not in str(refused.value)
    assert _stored(fingerprints) == before, "the recorded key stays"


def test_processes_starting_together_with_different_keys(
    fingerprints: Database, tmp_path: Path
) -> None:
    """On an empty table, whichever key records first wins; every other key is refused."""
    secrets = [TEST_SECRET, OTHER_SECRET] * 2
    barrier = threading.Barrier(len(secrets))
    accepted: list[str] = []
    refused: list[str] = []
    failures: list[BaseException] = []

    def start(secret: str) -> None:
        settings = _settings(tmp_path, fingerprints, secret)
        barrier.wait()
        try:
            check_secret_key(fingerprints, settings)
            accepted.append(secret)
        except SecretKeyMismatch:
            refused.append(secret)
        except BaseException as exc:  # asserted below
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(secret,)) for secret in secrets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert len(set(accepted)) == 1
    assert len(accepted) == 2
    assert len(refused) == 2
    assert set(refused).isdisjoint(accepted)


def test_the_web_app_refuses_to_start_with_another_key(
    fingerprints: Database, tmp_path: Path
) -> None:
    with TestClient(create_app(_settings(tmp_path, fingerprints, TEST_SECRET))) as client:
        assert client.get("/healthz").status_code == 200

    other = create_app(_settings(tmp_path, fingerprints, OTHER_SECRET))
    with pytest.raises(SecretKeyMismatch, match=MISMATCH), TestClient(other):
        pass


def test_an_unmigrated_database_is_explained(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        settings = _settings(tmp_path, database, TEST_SECRET)
        with pytest.raises(KeyCheckFailed, match="undersigned db upgrade"):
            check_secret_key(database, settings)
        check_secret_key(database, settings, migrated=False)  # before migrating: nothing to do
    finally:
        database.dispose()
