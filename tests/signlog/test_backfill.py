"""Migration 0011's backfill: a database with signatures from before the log gets a
commitment for every confirmed signature and one queued add per counted one, in list
order, so that after a sequencer pass each letter's log counts its tally."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Boolean, DateTime, Integer, MetaData, Numeric, Table, select, update
from sqlalchemy.orm import Session

from app.db import Database, utcnow
from app.integrity import log_differences
from app.letters.models import LetterTally
from app.migrate import upgrade
from app.signlog import sequencer, service
from app.signlog.entries import hour_of
from app.signlog.models import LogEntry
from tests.support.config import PG_URL, make_settings, skip_or_fail
from tests.support.databases import create_postgres_database, drop_postgres_database
from tests.support.factories import make_letter


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def old_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """An empty database of this test's own, migrated up to 0010 (before the log)."""
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'backfill.db'}")
        upgrade(database, "0010")
        yield database
        database.dispose()
        return
    if not PG_URL:
        skip_or_fail("UNDERSIGNED_TEST_DATABASE_URL is not set")
    name = f"undersigned_backfill_{os.getpid()}"
    database = Database(create_postgres_database(PG_URL, name))
    try:
        upgrade(database, "0010")
        yield database
    finally:
        database.dispose()
        drop_postgres_database(PG_URL, name)


def _filler(column: Any) -> Any:
    """A value for a required column the test does not care about."""
    if isinstance(column.type, Boolean):
        return False
    if isinstance(column.type, Integer | Numeric):
        return 0
    if isinstance(column.type, DateTime):
        return utcnow()
    return ""


def _insert_signatures(session: Session, rows: list[dict[str, Any]]) -> None:
    """Plain SQL rows of the 0010 `signatures` table (as reflected: the models are
    0011's), each required column the row does not set filled in."""
    table = Table("signatures", MetaData(), autoload_with=session.connection())
    assert "receipt_commitment" not in table.c
    required = [
        column
        for column in table.c
        if not column.nullable and column.server_default is None and not column.primary_key
    ]
    for number, row in enumerate(rows):
        values = {column.name: _filler(column) for column in required}
        values.update(public_id=f"public-{number:020d}", email_hash=f"{number:064x}",
                      display="public", name=f"Signer {number}")  # fmt: skip
        values.update(row)
        session.execute(table.insert().values(**values))


def test_the_backfill_logs_every_counted_signature_in_list_order(
    old_database: Database, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, old_database.url)
    now = utcnow()
    with old_database.write() as session:
        letters = [make_letter(session) for _ in range(3)]
        first, second, empty = (letter.id for letter in letters)
        slugs = {letter.id: letter.slug for letter in letters}
        # Inserted out of list order (ids do not follow positions), with removed and
        # withdrawn ones among them, confirmed over several hours.
        plan = [
            (first, 3, "verified", 5),
            (first, 1, "verified", 30),
            (first, 4, "removed", 20),
            (second, 2, "verified", 1),
            (first, 2, "withdrawn", 25),
            (first, 5, "verified", 2),
            (second, 1, "verified", 3),
            (second, 3, "removed", 2),
        ]
        _insert_signatures(
            session,
            [
                {
                    "letter_id": letter_id,
                    "position": position,
                    "status": status,
                    "verified_at": now - timedelta(hours=hours_ago, minutes=position),
                }
                for letter_id, position, status, hours_ago in plan
            ],
        )
        for letter_id, count in ((first, 3), (second, 2)):
            session.execute(
                update(LetterTally)
                .where(LetterTally.letter_id == letter_id)
                .values(verified_count=count, last_position=5)
            )

    upgrade(old_database)

    with old_database.read() as session:
        table = Table("signatures", MetaData(), autoload_with=session.connection())
        signatures = session.execute(
            select(
                table.c.letter_id,
                table.c.position,
                table.c.status,
                table.c.verified_at,
                table.c.receipt_commitment,
            ).order_by(table.c.letter_id, table.c.position)
        ).all()
        entries = session.execute(
            select(
                LogEntry.letter_id,
                LogEntry.seq,
                LogEntry.event,
                LogEntry.reason,
                LogEntry.hour,
                LogEntry.commitment,
            ).order_by(LogEntry.id)
        ).all()
    # A commitment for every confirmed signature (verified or removed), none twice;
    # none for a withdrawn one (its signer took it back before receipts existed).
    committed = {(row.letter_id, row.position): row.receipt_commitment for row in signatures}
    for row in signatures:
        if row.status == "withdrawn":
            assert row.receipt_commitment is None
        else:
            assert re.fullmatch(r"[0-9a-f]{64}", row.receipt_commitment or ""), row
    assert len({c for c in committed.values() if c}) == 7
    # One queued add per counted signature, per letter in list order, with the hour of
    # its confirmation only.
    counted = [row for row in signatures if row.status == "verified"]
    assert [(e.letter_id, e.seq, e.event, e.reason, e.commitment, e.hour) for e in entries] == [
        (row.letter_id, None, "add", "confirmed", row.receipt_commitment,
         hour_of(row.verified_at.replace(tzinfo=entries[0].hour.tzinfo)))
        for row in counted
    ]  # fmt: skip
    assert [(e.letter_id, committed_position(committed, e.commitment)) for e in entries] == [
        (first, 1), (first, 3), (first, 5), (second, 1), (second, 2)
    ]  # fmt: skip

    assert sequencer.sequence_all(old_database, settings) == 5
    with old_database.read() as session:
        assert log_differences(session) == []
        for letter_id, count in ((first, 3), (second, 2), (empty, 0)):
            latest = service.latest(session, settings, letter_id=letter_id, slug=slugs[letter_id])
            assert (latest.size, latest.count) == (count, count)
            tally = session.get_one(LetterTally, letter_id)
            assert latest.count == tally.verified_count


def committed_position(committed: dict[tuple[int, int], str | None], commitment: str) -> int:
    (position,) = [pos for (_, pos), value in committed.items() if value == commitment]
    return position
