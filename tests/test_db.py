"""Sessions: reads run without a transaction, writes in exactly one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from app import db
from app.config import Settings
from app.db import DEFAULT_POOL_SIZE, RESERVED_CONNECTIONS, Database
from app.letters.models import Letter, LetterTally
from app.signatures.service import verify_signature
from tests.support.config import make_settings
from tests.support.databases import truncate
from tests.support.factories import make_letter, sign, verify_token
from tests.support.pgwire import counting_relay


def test_a_read_only_session_opens_no_transaction(clean_database: Database) -> None:
    with clean_database.read() as session:
        if clean_database.dialect == "postgresql":
            # Each statement is its own transaction: two calls, two transaction ids.
            first = session.scalar(text("SELECT txid_current()"))
            second = session.scalar(text("SELECT txid_current()"))
            assert first != second
        else:
            session.scalar(text("SELECT 1"))
            raw = session.connection().connection.dbapi_connection
            assert raw is not None
            assert raw.in_transaction is False


def test_a_write_after_a_read_on_the_same_pool_is_still_one_transaction(
    clean_database: Database,
) -> None:
    """The pool hands the read's connection back reset: a failed write rolls back."""
    for _ in range(3):
        with clean_database.read() as session:
            session.scalar(text("SELECT 1"))
        with pytest.raises(RuntimeError), clean_database.write() as session:
            make_letter(session, slug="rolled-back")
            raise RuntimeError("fail after the insert")
    with clean_database.read() as session:
        assert session.scalar(select(func.count()).select_from(Letter)) == 0


@pytest.mark.parametrize("pool_size", [None, 7])
def test_the_pool_is_fixed_and_requests_get_all_but_the_reserve(
    database: Database, pool_size: int | None
) -> None:
    """No overflow: app/web/deps.py admits `request_slots` requests, and the pool has a
    connection for each of them plus the reserve (the mail worker, health checks)."""
    options = {} if pool_size is None else {"pool_size": pool_size}
    fresh = Database(database.url, **options)
    try:
        size = pool_size or DEFAULT_POOL_SIZE
        assert fresh.pool_size == size
        assert fresh.engine.pool.size() == size  # type: ignore[attr-defined]
        assert fresh.engine.pool._max_overflow == 0  # type: ignore[attr-defined]
        assert fresh.request_slots == size - RESERVED_CONNECTIONS
    finally:
        fresh.dispose()


def _backend_pid(database: Database) -> int:
    with database.read() as session:
        pid = session.scalar(text("SELECT pg_backend_pid()"))
    assert isinstance(pid, int)
    return pid


def test_a_connection_that_rested_is_pinged_and_a_dead_one_replaced(
    postgres: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """D189: a pooled connection that rested `PING_AFTER_IDLE_SECONDS` is pinged on
    checkout; when its server process is gone, the request gets a new connection."""
    fresh = Database(postgres.url, pool_size=1)
    try:
        first = _backend_pid(fresh)
        with postgres.read() as session:  # the server ends that connection (a restart)
            assert session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
        second = _backend_pid(fresh)  # pinged, found dead, replaced: no error
        assert second != first
    finally:
        fresh.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(
    postgres: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The point of D189: under load a checkout costs no extra round trip; after a rest
    it does."""
    pings: list[object] = []
    fresh = Database(postgres.url, pool_size=1)
    real_ping = fresh.engine.dialect.do_ping

    def counting_ping(conn: Any) -> bool:
        pings.append(conn)
        return real_ping(conn)

    monkeypatch.setattr(fresh.engine.dialect, "do_ping", counting_ping)
    try:
        for _ in range(5):
            _backend_pid(fresh)
        assert pings == []
        monkeypatch.setattr(db, "PING_AFTER_IDLE_SECONDS", 0.0)
        _backend_pid(fresh)
        assert len(pings) == 1
    finally:
        fresh.dispose()


def test_the_setting_and_the_database_agree_on_the_default_pool() -> None:
    """`undersigned serve` sizes its pool from the setting; Database() alone from
    DEFAULT_POOL_SIZE (D191). One default, stated twice."""
    assert Settings.model_fields["database_pool_size"].default == DEFAULT_POOL_SIZE


# --- Round trips (D197) ------------------------------------------------------------------


def test_a_confirmation_waits_for_the_server_five_times(postgres: Database, tmp_path: Path) -> None:
    """Counted on the wire: BEGIN, the address's lock, the upsert, the count, COMMIT.
    A change to the confirmation that adds a wait shows here (and one that removes
    one must say what it measured: D197 removed two and lost)."""
    truncate(postgres)
    settings = make_settings(tmp_path, postgres.url)
    with postgres.write() as session:
        letter = make_letter(session)
        token, letter_id = verify_token(settings, sign(session, letter, settings)), letter.id
    with counting_relay(postgres.url) as (url, trips):
        relayed = Database(url, pool_size=1)
        try:
            with relayed.read() as session:  # connected, and the dialect set up
                session.scalar(text("SELECT 1"))
            trips.reset()
            with relayed.write() as session:
                assert not verify_signature(session, token=token, settings=settings).already
            assert trips.count == 5
        finally:
            relayed.dispose()
    with postgres.read() as session:
        tally = select(LetterTally.verified_count).where(LetterTally.letter_id == letter_id)
        assert session.scalar(tally) == 1
