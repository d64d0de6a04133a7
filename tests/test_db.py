"""Sessions: reads run without a transaction, writes in exactly one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, bindparam, event, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app import db
from app.config import Settings
from app.db import DEFAULT_POOL_SIZE, RESERVED_CONNECTIONS, Database, OnDriver, utcnow
from app.letters.models import Letter, LetterTally
from app.signatures import service
from app.signatures.models import SignatureDisplay, SignatureStatus
from app.signatures.service import verify_signature
from app.signlog import entries as signlog
from app.signlog.models import LogReason
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


# --- Statements on the driver (D199) -------------------------------------------------------


def test_a_dead_connection_found_on_the_driver_is_a_disconnect(postgres: Database) -> None:
    """SQLAlchemy's own handling of the driver's error: wrapped as a DBAPIError marked
    `connection_invalidated` (D194's 503 reads it), the connection dropped from the
    pool, and the next session gets a live one."""
    fresh = Database(postgres.url, pool_size=1)
    try:
        first = _backend_pid(fresh)
        with postgres.read() as session:
            assert session.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        with Session(fresh.engine) as session:
            with pytest.raises(DBAPIError) as caught:
                OnDriver(select(bindparam("one", type_=Integer))).rows(session, {"one": 1})
            assert caught.value.connection_invalidated
            assert type(caught.value.orig).__module__.startswith("psycopg")
        assert _backend_pid(fresh) != first
    finally:
        fresh.dispose()


def _sent_by_sqlalchemy(database: Database, statement: Any, values: dict[str, Any]) -> Any:
    """The SQL and parameters SQLAlchemy's own execution sends for `statement`."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, sql: str, parameters: Any, *_: Any) -> None:
        sent.append((sql, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        with database.write() as session:
            session.execute(statement, values)
            session.rollback()
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    (only,) = sent
    return only


def test_the_confirmation_binds_on_the_driver_as_sqlalchemy_does(
    postgres: Database, tmp_path: Path
) -> None:
    """The confirmation's three statements on the driver send what SQLAlchemy would send
    through the engine: the same SQL, the same parameters after the types' processors
    (a StrEnum as its value, a datetime as `UTCDateTime` binds it)."""
    truncate(postgres)
    settings = make_settings(tmp_path, postgres.url)
    with postgres.write() as session:
        pending = sign(session, make_letter(session), settings)
        public_id, letter_id, email_hash = pending.public_id, pending.letter_id, pending.email_hash
    now = utcnow()
    new_values: dict[str, Any] = {
        f"new_{name}": value
        for name, value in {
            "letter_id": letter_id,
            "email_hash": email_hash,
            "name": "Ada",
            "title": "",
            "organization": "Acme",
            "city": "",
            "display": SignatureDisplay.PUBLIC,
            "status": SignatureStatus.VERIFIED,
            "email": None,
            "contact_ok": False,
            "email_domain": "example.org",
            "show_domain": True,
            "name_threshold": None,
            "comment": "",
            "comment_public_ok": False,
            "comment_approved": False,
            "version": 1,
            "verified_at": now,
            "position": None,
            "public_id": public_id,
            "locale": "en",
            "receipt_commitment": "c0ffee",
        }.items()
    }
    cases = [
        (service._LOCK_ON_DRIVER, service._LOCK_ADDRESS, {"public_id": public_id, "now": now}),
        (
            service._UPSERT_ON_DRIVER,
            service._confirm_upsert("postgresql"),
            {
                **new_values,
                "address_letter": letter_id,
                "address_hash": email_hash,
                "pending_id": pending.id,
            },
        ),
        (
            service._COUNT_ON_DRIVER,
            service._COUNT_AND_PLACE,
            {
                "tally_of": letter_id,
                "signature_of": 1,
                **signlog.entry_values(
                    letter_id=letter_id, reason=LogReason.CONFIRMED, commitment="c0ffee", now=now
                ),
            },
        ),
    ]
    for on_driver, statement, values in cases:
        sql, parameters = _sent_by_sqlalchemy(postgres, statement, values)
        assert on_driver.sql == sql
        ours = on_driver.parameters(values)
        assert ours == parameters
        # Processed as SQLAlchemy processes them (a StrEnum equals its value unprocessed).
        assert {k: type(v) for k, v in ours.items()} == {k: type(v) for k, v in parameters.items()}
        assert str in {type(v) for v in ours.values()}


def test_the_engine_s_cursor_listeners_see_a_statement_on_the_driver(
    postgres: Database,
) -> None:
    """What tests of "the same statements whatever the address" and SQL instrumentation
    watch: `before_cursor_execute` and `after_cursor_execute`, with no context."""
    seen: list[tuple[str, str, Any, Any]] = []

    def before(conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append(("before", sql, parameters, context))

    def after(conn: Any, cursor: Any, sql: str, parameters: Any, context: Any, many: bool) -> None:
        seen.append(("after", sql, parameters, context))

    on_driver = OnDriver(select(bindparam("one", type_=Integer)))
    event.listen(postgres.engine, "before_cursor_execute", before)
    event.listen(postgres.engine, "after_cursor_execute", after)
    try:
        with postgres.write() as session:
            assert [tuple(row) for row in on_driver.rows(session, {"one": 7})] == [(7,)]
    finally:
        event.remove(postgres.engine, "before_cursor_execute", before)
        event.remove(postgres.engine, "after_cursor_execute", after)
    assert seen == [
        ("before", on_driver.sql, {"one": 7}, None),
        ("after", on_driver.sql, {"one": 7}, None),
    ]
