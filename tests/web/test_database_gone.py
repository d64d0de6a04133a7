"""D194: when PostgreSQL closes the app's connections (a restart, a failover), the
request that finds its connection dead gets 503 with Retry-After, not a 500, and the
next request works. D189: a connection is pinged only after resting, so a connection
used a moment ago is found dead by the request itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, text

from app.db import Database
from app.letters.models import LetterTally
from app.main import create_app
from app.migrate import upgrade
from app.signatures.models import Signature
from tests.support.config import PG_URL, make_settings, skip_or_fail
from tests.support.databases import scratch_postgres_database
from tests.support.factories import verify_token
from tests.web.flows import GOOD_FORM, add_letter, pending_signature, pending_signatures

pytestmark = pytest.mark.postgres


@pytest.fixture
def own_database() -> Iterator[str]:
    """A database of this test's own: ending every connection to it touches no other
    test's pool."""
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    with scratch_postgres_database(PG_URL, "gone") as url:
        migrator = Database(url)
        upgrade(migrator)
        migrator.dispose()
        yield url


def _end_connections(url: str) -> int:
    """What a PostgreSQL restart does to the app: every server process of the database
    ends (this one's own excepted)."""
    admin = Database(url, pool_size=1)
    try:
        with admin.read() as session:
            ended = session.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        admin.dispose()
    assert isinstance(ended, int)
    return ended


@pytest.mark.parametrize("path", ["/api/v1/letters/ice-out", "/letters/ice-out"])
def test_a_lost_connection_is_a_503_and_the_next_request_works(
    own_database: str, tmp_path: Path, path: str
) -> None:
    app = create_app(make_settings(tmp_path, own_database))
    add_letter(app, slug="ice-out")
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        assert client.get(path).status_code == 200
        assert _end_connections(own_database) >= 1
        lost = client.get(path)
        assert lost.status_code == 503
        assert lost.headers["retry-after"] == "1"
        if path.startswith("/api/"):
            assert lost.json()["error"] == "unavailable"
        else:
            assert "text/html" in lost.headers["content-type"]
        assert client.get(path).status_code == 200


def test_a_signature_sent_on_a_lost_connection_is_refused_and_not_stored(
    own_database: str, tmp_path: Path
) -> None:
    app = create_app(make_settings(tmp_path, own_database))
    add_letter(app, slug="ice-out")
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        sign = "/api/v1/letters/ice-out/signatures"
        assert (
            client.post(sign, json={**GOOD_FORM, "email": "first@example.org"}).status_code == 202
        )
        _end_connections(own_database)
        lost = client.post(sign, json={**GOOD_FORM, "email": "lost@example.org"})
        assert lost.status_code == 503
        again = client.post(sign, json={**GOOD_FORM, "email": "lost@example.org"})
        assert again.status_code == 202
    emails = sorted(str(p.email) for p in pending_signatures(app))
    assert emails == ["first@example.org", "lost@example.org"]  # once, from the retry


def test_a_confirmation_sent_on_a_lost_connection_is_refused_and_counted_once(
    own_database: str, tmp_path: Path
) -> None:
    """D199: the confirmation's statements run on the driver, and a dead connection
    found there is still SQLAlchemy's disconnect (503, the pool's connections replaced),
    not a 500; the retry counts it once."""
    app = create_app(make_settings(tmp_path, own_database))
    letter = add_letter(app, slug="ice-out")
    settings = app.state.settings
    first, lost = (
        verify_token(settings, pending_signature(app, letter, email=f"{who}@example.org"))
        for who in ("first", "lost")
    )
    verify = "/api/v1/signatures/verify"
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        assert client.post(verify, json={"token": first}).status_code == 200
        assert _end_connections(own_database) >= 1
        refused = client.post(verify, json={"token": lost})
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert client.post(verify, json={"token": lost}).status_code == 200
        assert client.post(verify, json={"token": lost}).status_code == 200  # again: no change
    with app.state.database.read() as session:
        tally = session.scalar(select(LetterTally.verified_count))
        verified = session.scalar(select(func.count()).select_from(Signature))
    assert (tally, verified) == (2, 2)
