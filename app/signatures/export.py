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
import io
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import Database
from app.organizers.service import Actor, record
from app.signatures.models import Signature, SignatureDisplay, SignatureStatus

BATCH_SIZE = 1000
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


def neutralise(cell: str) -> str:
    """A text cell a spreadsheet will show as text, never run as a formula."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _line(cells: Iterable[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(
        [neutralise(cell) if isinstance(cell, str) else cell for cell in cells]
    )
    return buffer.getvalue()


def _cells(row: Any) -> tuple[Any, ...]:
    public = row.display == SignatureDisplay.PUBLIC
    return (
        row.position,
        row.verified_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        row.name,
        row.title,
        row.organization,
        row.city,
        row.display.value,
        (row.email or "") if public and row.contact_ok else "",
        row.email_domain,
        row.version,
        "yes" if row.hidden else "no",
        row.comment,
    )


def _batch(session: Session, letter_id: int, after: int, limit: int) -> list[Any]:
    return list(
        session.execute(
            select(
                Signature.position,
                Signature.verified_at,
                Signature.display,
                Signature.name,
                Signature.title,
                Signature.organization,
                Signature.city,
                Signature.contact_ok,
                Signature.email,
                Signature.email_domain,
                Signature.version,
                Signature.hidden,
                Signature.comment,
            )
            .where(
                Signature.letter_id == letter_id,
                Signature.status == SignatureStatus.VERIFIED,
                Signature.position > after,
            )
            .order_by(Signature.position)
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
    after = 0
    while True:
        with database.read() as session:
            rows = _batch(session, letter_id, after, batch_size)
        for row in rows:
            yield _line(_cells(row))
        if len(rows) < batch_size:
            return
        after = rows[-1].position


def record_export(session: Session, *, actor: Actor, letter_id: int) -> None:
    """The audit log's line for an export (made before the first byte is sent: the
    number of rows is not known then)."""
    record(session, actor=actor, letter_id=letter_id, action="signatures.export")
