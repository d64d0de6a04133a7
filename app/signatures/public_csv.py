"""A letter's public signer list as CSV (`/letters/{slug}/signers.csv`), for
journalists and researchers: what the public list shows, nothing more, in constant
memory.

Rules kept here:
- Only for a letter whose organizers publish its signer list (the caller checks).
- The same signers and the same fields as the public list and the API
  (`service.to_public`): listed signatures only (counted, not hidden); anonymous
  signers, and signers whose name waits for enough colleagues, have every identity
  field empty and `anonymous` = yes, with their badge if they chose to show it. No
  list position, no email, no comment, no time of day: the day signed (UTC) only.
- Oldest first. Read in keyset batches on the list position, each in its own short
  read session (the replica's, when one is set), closed before its lines are sent: no
  connection is held while a slow client downloads, and memory does not grow with the
  letter (as the organizers' export, app/signatures/export.py).
- Cells a spreadsheet would run as a formula get a leading apostrophe (export.neutralise).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, load_only

from app.db import Database
from app.letters.models import Letter
from app.signatures import badges
from app.signatures.export import neutralise
from app.signatures.models import Signature
from app.signatures.schemas import PublicSignature
from app.signatures.service import to_public

BATCH_SIZE = 2000
COLUMNS = (
    "signed_on",
    "name",
    "title",
    "organization",
    "city",
    "anonymous",
    "verified_domain",
    "verified_company",
    "confirmed_by_organizers",
)
_LOADED = load_only(
    Signature.position,
    Signature.display,
    Signature.name,
    Signature.title,
    Signature.organization,
    Signature.city,
    Signature.show_domain,
    Signature.email_domain,
    Signature.name_threshold,
    Signature.organizer_confirmed,
    Signature.verified_at,
    raiseload=True,
)


def _line(cells: Sequence[str]) -> str:
    """One CSV line (RFC 4180: quoted when needed, CRLF), formula-safe."""
    quoted = []
    for cell in cells:
        cell = neutralise(cell)
        if any(char in cell for char in ',"\r\n'):
            cell = '"' + cell.replace('"', '""') + '"'
        quoted.append(cell)
    return ",".join(quoted) + "\r\n"


def _cells(signer: PublicSignature) -> tuple[str, ...]:
    return (
        signer.signed_on.isoformat(),
        signer.name or "",
        signer.title or "",
        signer.organization or "",
        signer.city or "",
        "no" if signer.name is not None else "yes",
        signer.verified_domain or "",
        signer.verified_company or "",
        "yes" if signer.organizer_confirmed else "no",
    )


def _batch(
    session: Session, letter_id: int, after: int, limit: int
) -> tuple[list[PublicSignature], int | None]:
    """The next `limit` listed signatures after position `after`, as the public sees
    them, and the last position read (None when there were none)."""
    letter = session.get(Letter, letter_id)
    if letter is None:  # deleted while downloading
        return [], None
    rows = list(
        session.scalars(
            select(Signature)
            .options(_LOADED)
            .where(*badges.listed(letter_id), Signature.position > after)
            .order_by(Signature.position)
            .limit(limit)
        )
    )
    crowds = badges.crowds_for(session, letter, rows)
    return [to_public(row, crowds) for row in rows], (rows[-1].position if rows else None)


def csv_lines(
    database: Database, *, letter_id: int, batch_size: int | None = None
) -> Iterator[str]:
    """The header, then one line per listed signer, oldest first. `database`: read
    through `public_read()` (the replica when one is set). `batch_size`: rows per
    session (BATCH_SIZE by default)."""
    batch_size = batch_size or BATCH_SIZE
    yield _line(COLUMNS)
    after = 0
    while True:
        with database.public_read() as session:
            signers, last = _batch(session, letter_id, after, batch_size)
        for signer in signers:
            yield _line(_cells(signer))
        if last is None or len(signers) < batch_size:
            return
        after = last
