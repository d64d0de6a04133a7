"""The CSV export, on SQLite and PostgreSQL: what it holds, what it leaves out, and
that it reads in short keyset batches (no connection held between them)."""

from __future__ import annotations

import csv
import io
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.db import Database
from app.letters.models import Letter, LetterTally
from app.organizers.models import AuditEvent
from app.organizers.service import SHELL
from app.signatures import export
from app.signatures.export import COLUMNS, csv_lines, neutralise, record_export
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus
from tests.support.factories import make_letter

START = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def add_signatures(session: Session, letter: Letter, count: int, **values: Any) -> list[int]:
    """`count` verified signatures straight into the table (fast; the export reads only
    this table), numbered after the letter's last position."""
    tally = session.get(LetterTally, letter.id)
    assert tally is not None
    made = []
    for _ in range(count):
        tally.last_position += 1
        position = tally.last_position
        fields: dict[str, Any] = {
            "letter_id": letter.id,
            "email_hash": f"{letter.id}-{position}",
            "position": position,
            "status": SignatureStatus.VERIFIED,
            "name": f"Signer {position}",
            "title": "Engineer",
            "organization": "Example Corp",
            "city": "Oakland",
            "email_domain": "example.org",
            "verified_at": START + timedelta(minutes=position),
            "version": 1,
            **values,
        }
        session.add(Signature(**fields))
        made.append(position)
    session.flush()
    return made


def parse(lines: list[str]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("".join(lines))))


class Reads:
    """Counts `database.read()` sessions, and checks no connection is out between them."""

    def __init__(self, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = database.read

        @contextmanager
        def counted() -> Iterator[Session]:
            self.count += 1
            with original() as session:
                yield session

        monkeypatch.setattr(database, "read", counted)


def checked_out(database: Database) -> int:
    return int(database.engine.pool.checkedout())  # type: ignore[attr-defined]


def test_the_export_holds_verified_signatures_in_list_order(clean_database: Database) -> None:
    with clean_database.write() as session:
        letter = make_letter(session)
        other = make_letter(session)
        contact = add_signatures(
            session, letter, 1, name="Ada Lovelace", email="ada@engines.example",
            contact_ok=True, email_domain="engines.example", comment='She said, "yes"\nand left.',
            version=2,
        )[0]  # fmt: skip
        private = add_signatures(
            session, letter, 1, email="kept-by-mistake@example.org", contact_ok=False
        )[0]
        anonymous = add_signatures(
            session, letter, 1, display=SignatureDisplay.ANONYMOUS, name="", title="",
            organization="", city="", email_domain="", comment="Quietly.",
        )[0]  # fmt: skip
        hidden = add_signatures(session, letter, 1, hidden=True)[0]
        removed = add_signatures(session, letter, 1, status=SignatureStatus.REMOVED)[0]
        withdrawn = add_signatures(session, letter, 1, status=SignatureStatus.WITHDRAWN)[0]
        add_signatures(session, other, 2)
    lines = list(csv_lines(clean_database, letter_id=letter.id))
    assert lines[0] == ",".join(COLUMNS) + "\r\n"
    rows = parse(lines)
    assert [int(row["position"]) for row in rows] == [contact, private, anonymous, hidden]
    assert removed not in {int(row["position"]) for row in rows}
    assert withdrawn not in {int(row["position"]) for row in rows}
    by_position = {int(row["position"]): row for row in rows}
    assert by_position[contact] == {
        "position": str(contact),
        "confirmed_at": (START + timedelta(minutes=contact)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "name": "Ada Lovelace",
        "title": "Engineer",
        "organization": "Example Corp",
        "city": "Oakland",
        "display": "public",
        "email": "ada@engines.example",
        "email_domain": "engines.example",
        "version": "2",
        "hidden": "no",
        "comment": 'She said, "yes"\nand left.',
    }
    # Only signers who agreed to be contacted have an address in the file.
    assert by_position[private]["email"] == ""
    assert by_position[anonymous]["display"] == "anonymous"
    assert [by_position[anonymous][key] for key in ("name", "email", "email_domain")] == [""] * 3
    assert by_position[anonymous]["comment"] == "Quietly."
    assert by_position[hidden]["hidden"] == "yes"


def test_an_empty_letter_exports_its_header(clean_database: Database) -> None:
    with clean_database.write() as session:
        letter = make_letter(session)
    assert list(csv_lines(clean_database, letter_id=letter.id)) == [",".join(COLUMNS) + "\r\n"]


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil")', '\'=HYPERLINK("http://evil")'),
        ("+1 555", "'+1 555"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tTab", "'\tTab"),
        ("\rReturn", "'\rReturn"),
        ("Ada = genius", "Ada = genius"),
        ("", ""),
    ],
)
def test_neutralise(cell: str, written: str) -> None:
    assert neutralise(cell) == written


def test_formula_cells_are_written_as_text(clean_database: Database) -> None:
    with clean_database.write() as session:
        letter = make_letter(session)
        add_signatures(
            session, letter, 1, name="=cmd|' /C calc'!A0", organization="+Corp", title="-",
            city="@home", comment="=1+1", email="=x@example.org", contact_ok=True,
        )  # fmt: skip
    (row,) = parse(list(csv_lines(clean_database, letter_id=letter.id)))
    assert row["name"] == "'=cmd|' /C calc'!A0"
    assert (row["organization"], row["title"], row["city"], row["comment"], row["email"]) == (
        "'+Corp",
        "'-",
        "'@home",
        "'=1+1",
        "'=x@example.org",
    )
    assert row["position"] == "1"  # numbers are numbers


@pytest.mark.parametrize(("rows", "batch", "reads"), [(25, 4, 6), (24, 4, 5), (3, 1000, 1)])
def test_it_streams_in_short_keyset_batches(
    clean_database: Database,
    monkeypatch: pytest.MonkeyPatch,
    rows: int,
    batch: int,
    reads: int,
) -> None:
    with clean_database.write() as session:
        letter = make_letter(session)
        made = add_signatures(session, letter, rows)
        # Gaps in the positions (removed signatures) do not break the batches.
        session.execute(
            update(Signature)
            .where(Signature.letter_id == letter.id, Signature.position.in_(made[1::5]))
            .values(status=SignatureStatus.REMOVED)
        )
    kept = [position for position in made if position not in made[1::5]]
    monkeypatch.setattr(export, "BATCH_SIZE", batch)
    counter = Reads(clean_database, monkeypatch)
    lines = csv_lines(clean_database, letter_id=letter.id)
    header = next(lines)
    assert counter.count == 0  # nothing read before it is asked for
    collected = [header]
    for line in lines:
        # Each batch's session is closed before its lines are handed out.
        assert checked_out(clean_database) == 0
        collected.append(line)
        if len(collected) == 2:
            assert counter.count == 1  # lazily: one batch at a time
    # A full last batch needs one more (empty) read to know it was the last.
    assert counter.count == reads == len(kept) // batch + 1
    parsed = parse(collected)
    assert [int(row["position"]) for row in parsed] == kept
    assert all(row["name"] == f"Signer {row['position']}" for row in parsed)


def test_abandoning_the_export_holds_nothing(
    clean_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    with clean_database.write() as session:
        letter = make_letter(session)
        add_signatures(session, letter, 10)
    lines = cast(Generator[str, None, None], csv_lines(clean_database, letter_id=letter.id,
                                                      batch_size=3))  # fmt: skip
    for _ in range(5):
        next(lines)
    assert checked_out(clean_database) == 0
    lines.close()  # a client that went away
    assert checked_out(clean_database) == 0


def test_the_export_is_recorded(session: Session) -> None:
    letter = make_letter(session)
    record_export(session, actor=SHELL, letter_id=letter.id)
    session.flush()
    event = session.scalars(select(AuditEvent).where(AuditEvent.letter_id == letter.id)).one()
    assert (event.action, event.actor, event.detail) == ("signatures.export", "command line", {})
