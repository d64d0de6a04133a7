"""Forgetting on a schedule, on SQLite and PostgreSQL: when a letter closed, kept contact
addresses expiring `contact_retention_days` after it, and anonymization
`anonymize_after_months` after it (once per closing, the tally unchanged)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db import utcnow
from app.letters.models import Letter, LetterTally
from app.letters.service import Transition, change_status
from app.organizers.service import SHELL
from app.signatures.models import Signature, SignatureDisplay
from app.signatures.retention import add_months, closed_letters, forget_closed_letters
from tests.support.factories import make_letter, sign_and_confirm


def _signature(session: Session, signature: Signature) -> Signature:
    session.expire_all()
    return session.get_one(Signature, signature.id)


def _closed_at(session: Session, letter: Letter, now: datetime) -> datetime | None:
    found = {closed.id: closed.closed_at for closed in closed_letters(session, now=now)}
    return found.get(letter.id)


def test_add_months_keeps_the_day_or_takes_the_months_last() -> None:
    assert add_months(datetime(2026, 8, 31, 12, tzinfo=UTC), 6) == datetime(
        2027, 2, 28, 12, tzinfo=UTC
    )
    assert add_months(datetime(2026, 1, 15, tzinfo=UTC), 12) == datetime(2027, 1, 15, tzinfo=UTC)
    assert add_months(datetime(2027, 11, 30, tzinfo=UTC), 3) == datetime(2028, 2, 29, tzinfo=UTC)


def test_when_a_letter_closed(session: Session, settings: Settings) -> None:
    now = utcnow()
    scheduled = make_letter(session, closes_at=now + timedelta(days=2))
    assert _closed_at(session, scheduled, now) is None  # still open
    assert _closed_at(session, scheduled, now + timedelta(days=3)) == scheduled.closes_at

    by_hand = make_letter(session)
    change_status(session, letter=by_hand, transition=Transition.CLOSE, actor=SHELL)
    closed_at = _closed_at(session, by_hand, now + timedelta(seconds=5))
    assert closed_at is not None and abs(closed_at - now) < timedelta(minutes=1)

    reopened = make_letter(session)
    change_status(session, letter=reopened, transition=Transition.CLOSE, actor=SHELL)
    change_status(session, letter=reopened, transition=Transition.REOPEN, actor=SHELL)
    assert _closed_at(session, reopened, now + timedelta(days=400)) is None


def test_contact_addresses_expire_after_the_retention_period(
    session: Session, settings: Settings
) -> None:
    closes = utcnow() + timedelta(days=1)
    letter = make_letter(session, closes_at=closes)
    letter.contact_retention_days = 30
    kept = sign_and_confirm(session, letter, settings, email="keep.me@example.org", contact_ok=True)
    assert kept.email == "keep.me@example.org"

    forget_closed_letters(session, now=closes + timedelta(days=29))
    assert _signature(session, kept).email == "keep.me@example.org"  # not yet
    counts = forget_closed_letters(session, now=closes + timedelta(days=30, seconds=1))
    assert counts["expired_contact_addresses"] >= 1
    row = _signature(session, kept)
    assert row.email is None and not row.contact_ok and row.name  # still listed, by name
    assert (
        forget_closed_letters(session, now=closes + timedelta(days=31))["expired_contact_addresses"]
        == 0
    )


def test_a_closed_letter_is_anonymized_after_n_months_once(
    session: Session, settings: Settings
) -> None:
    closes = utcnow() + timedelta(days=1)
    letter = make_letter(session, closes_at=closes)
    letter.anonymize_after_months = 6
    other = make_letter(session, closes_at=closes)  # no anonymization asked: left alone
    named = sign_and_confirm(session, letter, settings, name="Named Person", organization="Org",
                             email="named@acme.example", contact_ok=True)  # fmt: skip
    badged = sign_and_confirm(session, letter, settings, name="Badged Person",
                              email="badged@acme.example")  # fmt: skip
    badged.show_domain = True
    untouched = sign_and_confirm(session, other, settings, name="Untouched Person")
    session.flush()
    tally = session.scalar(
        select(LetterTally.verified_count).where(LetterTally.letter_id == letter.id)
    )

    forget_closed_letters(session, now=add_months(closes, 6) - timedelta(hours=1))
    assert _signature(session, named).name == "Named Person"
    counts = forget_closed_letters(session, now=add_months(closes, 6) + timedelta(hours=1))
    assert counts["anonymized_signatures"] >= 2
    row = _signature(session, named)
    assert row.display == SignatureDisplay.ANONYMOUS
    assert (row.name, row.organization, row.email, row.email_domain) == ("", "", None, "")
    row = _signature(session, badged)
    assert row.name == "" and row.email_domain == "acme.example"  # the badge it chose stays
    assert _signature(session, untouched).name == "Untouched Person"
    assert session.get_one(Letter, letter.id).anonymized_at is not None
    assert (
        session.scalar(select(LetterTally.verified_count).where(LetterTally.letter_id == letter.id))
        == tally
    )
    again = forget_closed_letters(session, now=add_months(closes, 7))
    assert again["anonymized_signatures"] == 0
