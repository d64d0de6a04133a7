"""Exporting a letter's counted signatures as CSV, in constant memory.

`csv_lines` reads in keyset batches (by list position), each in its own short read
session, and yields one line at a time: no connection is held while the lines of a
batch are being sent, and memory does not grow with the letter. The dashboard streams
it; `undersigned letter export` prints it.

Rules kept here:
- Email addresses appear only for signers who agreed to be contacted (no other address
  is kept anyway); anonymous signers have no name, title, organization, city or domain.
- Cells that a spreadsheet would read as a formula (starting with = + - @, a tab or a
  carriage return) get a leading apostrophe (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import Database
from app.organizers.service import Actor, record
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus

BATCH_SIZE = 5000
"""Rows per read session: a few MB at most, and few enough round trips that the reading
costs little next to the writing (bench/export.py: 1,000,000 rows)."""
COLUMNS = (
    "position",
    "confirmed_at",
    "name",
    "title",
    "organization",
    "city",
    "display",
    "email",
    "email_domain",
    "version",
    "hidden",
    "comment",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_STARTS)


def neutralise(cell: str) -> str:
    """A text cell a spreadsheet will show as text, never run as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _text(cell: str | None) -> str | None:
    """`neutralise` for a text column's value (None stays None: an empty cell)."""
    return "'" + cell if cell and cell[0] in _FORMULA_FIRST else cell


class _Echo:
    """A file for csv.writer whose `write` hands the line back: `writerow` then returns
    the row's CSV line, without a buffer to create or empty for every row."""

    def write(self, line: str) -> str:
        return line


def _writer() -> Any:
    return csv.writer(_Echo(), lineterminator="\r\n")


def _line(cells: Iterable[Any]) -> str:
    return str(
        _writer().writerow([neutralise(cell) if isinstance(cell, str) else cell for cell in cells])
    )


_PUBLIC = SignatureDisplay.PUBLIC
_table = Signature.__table__.c
_SELECTED = (
    _table.position,
    _table.verified_at,
    _table.display,
    _table.name,
    _table.title,
    _table.organization,
    _table.city,
    _table.contact_ok,
    _table.email,
    _table.email_domain,
    _table.version,
    _table.hidden,
    _table.comment,
)
"""Table columns, not ORM attributes: a Core query, its rows plain tuples (the type
conversions, enums and aware datetimes, still apply)."""


def _cells(row: Any) -> tuple[Any, ...]:
    """One signature's CSV cells, from a row of `_SELECTED`'s columns in that order."""
    (position, verified_at, display, name, title, organization, city, contact_ok, email,
     email_domain, version, hidden, comment) = row  # fmt: skip
    return (
        position,
        # aware UTC (UTCDateTime): strftime("%Y-%m-%dT%H:%M:%SZ")'s text (years >= 1000), faster
        verified_at.isoformat(timespec="seconds")[:19] + "Z",
        _text(name),
        _text(title),
        _text(organization),
        _text(city),
        display.value,
        _text(email or "") if display == _PUBLIC and contact_ok else "",
        _text(email_domain),
        version,
        "yes" if hidden else "no",
        _text(comment),
    )


def _batch(session: Session, letter_id: int, after: int, limit: int) -> list[Any]:
    return list(
        session.execute(
            select(*_SELECTED)
            .where(
                _table.letter_id == letter_id,
                _table.status == SignatureStatus.VERIFIED,
                _table.position > after,
            )
            .order_by(_table.position)
            .limit(limit)
        ).all()
    )


def csv_lines(
    database: Database, *, letter_id: int, batch_size: int | None = None
) -> Iterator[str]:
    """The header, then one line per counted signature in list order (hidden ones too,
    marked). Each batch is read in its own session, closed before its lines are
    yielded. `batch_size`: rows per session (BATCH_SIZE by default)."""
    batch_size = batch_size or BATCH_SIZE
    yield _line(COLUMNS)
    writerow = _writer().writerow
    after = 0
    while True:
        with database.read() as session:
            rows = _batch(session, letter_id, after, batch_size)
        for row in rows:
            yield writerow(_cells(row))
        if len(rows) < batch_size:
            return
        after = rows[-1][0]  # the position


def record_export(session: Session, *, actor: Actor, letter_id: int) -> None:
    """The audit log's line for an export (made before the first byte is sent: the
    number of rows is not known then)."""
    record(session, actor=actor, letter_id=letter_id, action="signatures.export")
