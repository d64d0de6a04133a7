"""Sessions: reads run without a transaction, writes in exactly one."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from app.db import Database
from app.letters.models import Letter
from tests.support.factories import make_letter


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
