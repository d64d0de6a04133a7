"""Forgetting on a schedule: what a closed letter stops keeping about its signers.

Rules kept here (the worker applies them once an hour, `app.jobs.purge`):
- A letter's kept contact addresses (signers who asked for updates) are erased
  `Letter.contact_retention_days` (default 90) after the letter closes; `contact_ok`
  goes off with them. The signatures still count.
- A letter with `anonymize_after_months` has its signers anonymized that many months
  after it closes: names, titles, organizations, cities, addresses and comments are
  erased and every signature is listed as "Anonymous"; a verified domain stays only
  where its signer chose to show the badge. The tally does not move.
  `Letter.anonymized_at` records it; a letter that reopens and closes again is
  anonymized again.
- When a letter closed: its closing time, if that is what closed it; else the last
  close (or archive) in its audit log; else, for a letter made closed, when it was last
  changed. A letter that is open again is not closed.
- Every erasure overwrites the row (UPDATE), never only flags it. On SQLite
  `secure_delete` zeroes what a write frees, the full-text index is compacted so that no
  segment keeps an erased name's terms (`forget_search_terms`), and the worker then
  checkpoints the WAL (`app.jobs.forget_in_files`).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, text, update
from sqlalchemy.orm import Session

from app.letters.models import Letter, LetterStatus
from app.organizers.models import AuditEvent
from app.signatures.models import Signature, SignatureDisplay

CLOSE_ACTIONS = ("letter.close", "letter.archive")
"""The audit log's actions that close a letter (app.letters.service.change_status)."""


@dataclass(frozen=True, slots=True)
class ClosedLetter:
    id: int
    closed_at: datetime
    contact_retention_days: int
    anonymize_after_months: int | None
    anonymized_at: datetime | None


def add_months(moment: datetime, months: int) -> datetime:
    """`months` calendar months later, on the same day (or the month's last day)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def closed_letters(session: Session, *, now: datetime) -> list[ClosedLetter]:
    """Every letter that is closed now, with the moment it closed. Two queries."""
    rows = session.execute(
        select(
            Letter.id,
            Letter.status,
            Letter.closes_at,
            Letter.updated_at,
            Letter.contact_retention_days,
            Letter.anonymize_after_months,
            Letter.anonymized_at,
        ).where(
            or_(
                Letter.status == LetterStatus.CLOSED,
                and_(Letter.status == LetterStatus.OPEN, Letter.closes_at <= now),
            )
        )
    ).all()
    closed_ids = [row.id for row in rows if row.status == LetterStatus.CLOSED]
    last_closed: dict[int, datetime] = {}
    if closed_ids:
        last_closed = {
            letter_id: at
            for letter_id, at in session.execute(
                select(AuditEvent.letter_id, func.max(AuditEvent.created_at))
                .where(AuditEvent.letter_id.in_(closed_ids), AuditEvent.action.in_(CLOSE_ACTIONS))
                .group_by(AuditEvent.letter_id)
            )
            if letter_id is not None
        }
    found = []
    for row in rows:
        if row.status == LetterStatus.OPEN:
            closed_at = row.closes_at  # its closing time passed: that closed it
        else:
            # Closed by hand, or its closing time passed first (then closed by hand).
            known = [at for at in (last_closed.get(row.id), row.closes_at) if at and at <= now]
            closed_at = min(known) if known else row.updated_at
        found.append(
            ClosedLetter(
                row.id,
                closed_at,
                row.contact_retention_days,
                row.anonymize_after_months,
                row.anonymized_at,
            )
        )
    return found


def _changed(session: Session, statement: Any) -> int:
    result = session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def expire_contacts(session: Session, *, now: datetime, letters: list[ClosedLetter]) -> int:
    """Erases the kept contact addresses of letters closed for longer than their
    `contact_retention_days`. Returns how many signatures lost one."""
    due = [
        letter.id
        for letter in letters
        if letter.closed_at + timedelta(days=letter.contact_retention_days) <= now
    ]
    if not due:
        return 0
    return _changed(
        session,
        update(Signature)
        .where(
            Signature.letter_id.in_(due),
            or_(Signature.email.is_not(None), Signature.contact_ok.is_(True)),
        )
        .values(email=None, contact_ok=False),
    )


ANONYMIZED: dict[str, Any] = {
    "display": SignatureDisplay.ANONYMOUS,
    "name": "",
    "title": "",
    "organization": "",
    "city": "",
    "email": None,
    "contact_ok": False,
    "comment": "",
    "comment_public_ok": False,
    "comment_approved": False,
    "name_threshold": None,
    "organizer_confirmed": False,
}


def _identifies() -> Any:
    """A signature that still holds something anonymizing erases."""
    return or_(
        Signature.display != SignatureDisplay.ANONYMOUS,
        Signature.name != "",
        Signature.title != "",
        Signature.organization != "",
        Signature.city != "",
        Signature.email.is_not(None),
        Signature.comment != "",
        and_(Signature.show_domain.is_(False), Signature.email_domain != ""),
    )


def anonymize_closed(session: Session, *, now: datetime, letters: list[ClosedLetter]) -> int:
    """Anonymizes the signers of letters closed for `anonymize_after_months`, once per
    closing. Returns how many signatures it erased something from."""
    due = [
        letter.id
        for letter in letters
        if letter.anonymize_after_months is not None
        and add_months(letter.closed_at, letter.anonymize_after_months) <= now
        and (letter.anonymized_at is None or letter.anonymized_at < letter.closed_at)
    ]
    if not due:
        return 0
    erased = _changed(
        session,
        update(Signature)
        .where(Signature.letter_id.in_(due), _identifies())
        .values(
            **ANONYMIZED,
            email_domain=case((Signature.show_domain.is_(True), Signature.email_domain), else_=""),
        ),
    )
    session.execute(
        update(Letter)
        .where(Letter.id.in_(due))
        # `updated_at` unchanged: a letter made closed falls back on it as its closing.
        .values(anonymized_at=now, updated_at=Letter.updated_at)
        .execution_options(synchronize_session=False)
    )
    return erased


def forget_search_terms(session: Session) -> None:
    """SQLite: rewrites the signer search index (FTS5) into one segment, so that the
    terms of an erased name or organization are not left in an older segment behind a
    delete marker. Cheap when nothing changed since the last time. PostgreSQL's trigram
    indexes follow the rows: nothing to do."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            text("INSERT INTO signatures_search(signatures_search) VALUES ('optimize')")
        )


def forget_closed_letters(session: Session, *, now: datetime) -> dict[str, int]:
    """Both rules, in the caller's transaction; how many signatures each changed."""
    letters = closed_letters(session, now=now)
    counts = {
        "expired_contact_addresses": expire_contacts(session, now=now, letters=letters),
        "anonymized_signatures": anonymize_closed(session, now=now, letters=letters),
    }
    if counts["anonymized_signatures"]:
        forget_search_terms(session)
    return counts
